"""What the benchmark trains: one setting = (dataset, family or variant, seeds, steps).

Variants are discovered from the config files, never listed here. Rule:

* A family's reference config on digits28 is `<family>_digits.py` (`ae_digits`, `vae_digits`,
  `gan_digits`), and `ddpm_digits.py` for diffusion (`variants.REFERENCE_CONFIGS`).
* Every other config file in the configs folder whose `get_config()` has
  `dataset.name == "digits28"` and `model.family` in ae / vae / gan / diffusion is a variant
  of that family, named after its file without `_digits` (`gan_hinge_digits.py` ->
  `gan_hinge`).
* Its knobs are the leaves under `model` and `optimizer` whose value differs from the
  family's reference, except the network sizes (`model.latent_dim`, each body's `body` and
  `widths`, the denoiser's kind and sizes), which belong to the dataset.
* The benchmark applies the knobs on top of its own base config of the family for each
  dataset (`experiments/configs/hallucination_bases.py`). A variant that cannot apply there
  (DiffAugment on points) is reported as "n/a: <the one-line ConfigError>", found by building
  the family and tracing its init and train step, not from a hand-written list.
"""

import dataclasses
import json
from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from aigc_jax import data, latent_gmm
from aigc_jax.errors import ConfigError
from aigc_jax.training.family import get_family
from aigc_jax.training.parallel import on_one_device


# Config keys of the training loop (logging, periodic evaluation, checkpoints) that the
# benchmark's trainer does not read: left out of a setting's fingerprint.
UNUSED_KEYS = (
  "checkpoint",
  "train.eval_every",
  "train.sample_every",
  "train.log_every",
  "train.num_samples",
)
# Unconditional AE / VAE settings are also sampled through latent GMMs of these many
# components (`aigc_jax.latent_gmm`), each reported as the row "<setting>+gmm<K>": 10 is
# Ghosh et al.'s choice; 300 comes close to the empirical distribution of the training
# codes, so its samples approach reconstructions of training data and hallucinate less.
LATENT_GMM_COMPONENTS = (10, 300)


def apply_knobs(
  config: ml_collections.ConfigDict, knobs: Dict[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of `config` with each dotted key set (keys the config lacks are added)."""
  config = ml_collections.ConfigDict(config.to_dict())
  for path, value in knobs.items():
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
      if part not in node:
        node[part] = ml_collections.ConfigDict()
      node = node[part]
    node[leaf] = value
  return config


def unavailable_reason(config: ml_collections.ConfigDict) -> str:
  """ "" when the family builds, inits and traces a train step on the config's dataset;
  else "n/a: <the ConfigError's one line>". Only traces (no compilation)."""
  spec = data.get_dataset_spec(config.dataset.name)
  try:
    family = get_family(config, spec.sample_shape)
    state = jax.eval_shape(family.init, jax.random.PRNGKey(0))
    batch = {
      "image": jax.ShapeDtypeStruct((config.train.batch_size,) + spec.sample_shape, jnp.float32),
      "label": jax.ShapeDtypeStruct((config.train.batch_size,), jnp.int32),
      "mask": jax.ShapeDtypeStruct((config.train.batch_size,), jnp.float32),
    }
    # Traced on a device axis of size 1, as the multi-seed trainer runs it.
    jax.eval_shape(on_one_device(family.train_step), state, batch, jax.random.PRNGKey(0))
  except ConfigError as e:
    return f"n/a: {e}"
  return ""


@dataclasses.dataclass(frozen=True)
class Setting:
  """One row of the benchmark: a family or variant on a dataset, trained for several seeds.

  Attributes:
    dataset: project dataset name (known support).
    name: row name: the family (`gan`), the variant (`gan_hinge`) or `pacgan<M>`.
    family: ae, vae or gan.
    variant: the variant's config file ("" for a base family).
    knobs: the variant's knobs applied to the base ({} for a base family).
    config: the full config that trains it (its `train.num_steps` is the budget).
    seeds: the seeds trained.
    checkpoints: steps at which the models are measured, ascending, the last = num_steps.
    unavailable: "" or "n/a: <why>".
    latent_gmm_codes: training codes each latent GMM is fitted to (unconditional AE / VAE).
  """

  dataset: str
  name: str
  family: str
  variant: str
  knobs: Dict[str, Any]
  config: ml_collections.ConfigDict
  seeds: Tuple[int, ...]
  checkpoints: Tuple[int, ...]
  unavailable: str = ""
  latent_gmm_codes: int = latent_gmm.MAX_FIT_CODES

  @property
  def key(self) -> str:
    return f"{self.dataset}/{self.name}"

  @property
  def stem(self) -> str:
    """The name of its files under settings/: `<dataset>__<name>`."""
    return f"{self.dataset}__{self.name}"

  def config_json(self) -> str:
    return self.config.to_json_best_effort(sort_keys=True)

  def fingerprint(self) -> str:
    """What must match for a saved result of this setting to be reused: the config without
    the training loop's logging and checkpointing keys (`UNUSED_KEYS`, which the benchmark's
    trainer never reads), the seeds and the checkpoints."""
    config = json.loads(self.config_json())
    for path in UNUSED_KEYS:
      *parents, leaf = path.split(".")
      node = config
      for part in parents:
        node = node.get(part, {})
      node.pop(leaf, None)
    payload = {"config": config, "seeds": list(self.seeds), "checkpoints": list(self.checkpoints)}
    if self.family in ("ae", "vae") and config["model"].get("conditioning", "none") == "none":
      payload["latent_gmm_components"] = list(LATENT_GMM_COMPONENTS)  # Also measured (train).
      if self.latent_gmm_codes != latent_gmm.MAX_FIT_CODES:
        payload["latent_gmm_codes"] = self.latent_gmm_codes
    return json.dumps(payload, sort_keys=True)


def checkpoint_steps(num_steps: int, fractions: Sequence[float]) -> Tuple[int, ...]:
  """Distinct steps round(f * num_steps) >= 1 for each fraction, plus num_steps, ascending."""
  steps = {max(1, int(round(f * num_steps))) for f in fractions} | {num_steps}
  return tuple(sorted(s for s in steps if s <= num_steps))


def make_setting(
  dataset: str,
  name: str,
  family: str,
  base: ml_collections.ConfigDict,
  seeds: Sequence[int],
  num_steps: int,
  checkpoints: Sequence[int],
  variant: str = "",
  knobs: Optional[Dict[str, Any]] = None,
) -> Setting:
  """A setting of `base` with `knobs`, trained `num_steps`; its availability is checked."""
  config = apply_knobs(base, knobs or {})
  config.dataset.name = dataset
  config.train.num_steps = int(num_steps)
  return Setting(
    dataset=dataset,
    name=name,
    family=family,
    variant=variant,
    knobs=dict(knobs or {}),
    config=config,
    seeds=tuple(int(s) for s in seeds),
    checkpoints=tuple(int(c) for c in checkpoints),
    unavailable=unavailable_reason(config),
  )
