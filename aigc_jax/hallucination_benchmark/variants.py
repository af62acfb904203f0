"""Variant discovery from the config files, without jax (so the CLI checks `--only` before
jax starts); the rule is in `settings`' docstring.
"""

import dataclasses
import glob
import importlib.util
import os
from typing import Any, Dict, List, Optional

import ml_collections

from aigc_jax.errors import ConfigError

FAMILIES = ("ae", "vae", "gan", "diffusion")
REFERENCE_DATASET = "digits28"
# A family's reference config on digits28: `<family>_digits.py`, except diffusion's.
REFERENCE_CONFIGS = {family: f"{family}_digits" for family in FAMILIES}
REFERENCE_CONFIGS["diffusion"] = "ddpm_digits"
KNOB_SECTIONS = ("model", "optimizer")
# Network sizes are the dataset's, not a variant's.
NOT_KNOBS = (
  "model.latent_dim",
  "model.diffusion.denoiser",
  "model.diffusion.width",
  "model.diffusion.num_temporal_layers",
  "model.diffusion.channels",
  "model.diffusion.channel_multipliers",
  "model.diffusion.res_blocks_per_level",
  "model.diffusion.attention",
  "model.diffusion.norm_groups",
)
NOT_KNOB_BODY_KEYS = ("body", "widths")


def load_config_file(path: str, argument: Optional[str] = None) -> ml_collections.ConfigDict:
  """`get_config()` (or `get_config(argument)`) of a config file given by path."""
  name = "_hallucination_benchmark_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config() if argument is None else module.get_config(argument)


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> Dict[str, Any]:
  """{"a.b.c": leaf} of a ConfigDict; tuples and lists stay leaves."""
  out = {}
  for key, value in config.items():
    path = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(flatten(value, path + "."))
    else:
      out[path] = tuple(value) if isinstance(value, list) else value
  return out


def _is_knob(path: str) -> bool:
  if path in NOT_KNOBS or not path.startswith(tuple(s + "." for s in KNOB_SECTIONS)):
    return False
  parts = path.split(".")
  return not (
    len(parts) == 3 and parts[1] in ("encoder", "decoder") and parts[2] in NOT_KNOB_BODY_KEYS
  )


def variant_knobs(
  variant: ml_collections.ConfigDict, reference: ml_collections.ConfigDict
) -> Dict[str, Any]:
  """The knobs of a variant: {dotted key: value} where it differs from its reference."""
  ours, theirs = flatten(variant), flatten(reference)
  return {
    path: value
    for path, value in sorted(ours.items())
    if _is_knob(path) and theirs.get(path, object()) != value
  }


@dataclasses.dataclass(frozen=True)
class Variant:
  """A discovered variant: its name, family, config file and knobs."""

  name: str
  family: str
  path: str
  knobs: Dict[str, Any]


def discover_variants(configs_dir: str) -> List[Variant]:
  """Every variant config in `configs_dir` (see the module docstring), sorted by name.

  Raises ConfigError when a family's reference config is missing while a variant of it exists.
  """
  references, candidates = {}, []
  for path in sorted(glob.glob(os.path.join(configs_dir, "*.py"))):
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.startswith("_") or stem == "base":
      continue
    try:
      config = load_config_file(path)
    except TypeError:
      continue  # A config that needs an argument (pacgan_ring8.py:M) is not a digits variant.
    if (
      config.get("dataset", {}).get("name") != REFERENCE_DATASET
      or config.get("model", {}).get("family") not in FAMILIES
    ):
      continue
    if stem == REFERENCE_CONFIGS[config.model.family]:
      references[config.model.family] = config
    else:
      candidates.append((stem, path, config))
  variants = []
  for stem, path, config in candidates:
    family = config.model.family
    if family not in references:
      raise ConfigError(
        f"{path} is a {family} variant on {REFERENCE_DATASET}, but "
        f"{REFERENCE_CONFIGS[family]}.py (its reference) is not in {configs_dir}; add it."
      )
    name = stem[: -len("_digits")] if stem.endswith("_digits") else stem
    variants.append(Variant(name, family, path, variant_knobs(config, references[family])))
  return sorted(variants, key=lambda v: v.name)
