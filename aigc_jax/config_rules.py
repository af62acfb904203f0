"""Which config values can work, and which keys may change when a run resumes.

Two tables, the one place to extend when a config gains a key:
- `RULES`: dotted key -> `Rule` (a test and the allowed range in words). `check_config`
  applies every rule whose key the config has, before any work, and names each bad value
  in one line. Keys without a rule are not checked here (names are checked by the
  registries, shapes by the models, settings that cannot work together by the family
  builders). Every range lives here only: a builder trusts that its caller checked its
  section (`training.family.get_family` does).
- `CHANGEABLE_ON_RESUME`: keys a resumed run may change without `allow_config_change`,
  because they change what is logged, kept or read, not what is trained.

Batch sizes are checked in one place too, `check_batch_sizes`: whole GAN packs (and
discriminator chunks), split evenly over the devices.

This module imports neither jax nor the training code, so the command-line tools can check
a config before jax starts; what it needs of training (the learning-rate schedules, for a
resume) is passed in.
"""

import dataclasses
import json
import math
import numbers
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import ml_collections

from aigc_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Rule:
  """`check(value) -> bool`, and `allowed`: the allowed range in words ("an integer >= 1")."""

  check: Callable[[Any], bool]
  allowed: str


def _is_integer(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
  return (
    isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
  )


def integer_at_least(minimum: int) -> Rule:
  return Rule(lambda v: _is_integer(v) and v >= minimum, f"an integer >= {minimum}")


def integer_in(low: int, high: int) -> Rule:
  """An integer in [low, high)."""
  return Rule(lambda v: _is_integer(v) and low <= v < high, f"an integer in [{low}, {high})")


def number_above(bound: float) -> Rule:
  return Rule(lambda v: _is_finite_number(v) and v > bound, f"a finite number > {bound:g}")


def number_at_least(bound: float) -> Rule:
  return Rule(lambda v: _is_finite_number(v) and v >= bound, f"a finite number >= {bound:g}")


def number_in(low: float, high: float) -> Rule:
  """A finite number in [low, high)."""
  return Rule(
    lambda v: _is_finite_number(v) and low <= v < high, f"a number in [{low:g}, {high:g})"
  )


def number_strictly_between(low: float, high: float) -> Rule:
  """A finite number in (low, high)."""
  return Rule(lambda v: _is_finite_number(v) and low < v < high, f"a number in ({low:g}, {high:g})")


def number_from_to(low: float, high: float) -> Rule:
  """A finite number in [low, high]."""
  return Rule(
    lambda v: _is_finite_number(v) and low <= v <= high, f"a number in [{low:g}, {high:g}]"
  )


def boolean() -> Rule:
  return Rule(lambda v: isinstance(v, bool), "True or False")


def one_of(*choices: str) -> Rule:
  return Rule(lambda v: v in choices, "one of " + ", ".join(choices))


def widths() -> Rule:
  return Rule(
    lambda v: isinstance(v, (tuple, list)) and all(_is_integer(w) and w >= 1 for w in v),
    "a tuple of integers >= 1",
  )


def existing_directory_or_empty() -> Rule:
  # tfds would create a missing data_dir anywhere, even under /; a typo must not do that.
  return Rule(
    lambda v: v == "" or (isinstance(v, str) and os.path.isdir(os.path.expanduser(v))),
    "an existing directory, or empty for tfds's default",
  )


RULES: Dict[str, Rule] = {
  "seed": integer_in(0, 2**32),  # grain's shuffle seed range.
  "dataset.data_dir": existing_directory_or_empty(),
  "model.latent_dim": integer_at_least(1),
  "model.conv_impl": one_of("xla", "matmul", "auto"),
  "model.feature_dim": integer_at_least(1),
  "model.beta": number_at_least(0),
  "model.likelihood_scale": number_above(0),
  "model.encoder.widths": widths(),
  "model.decoder.widths": widths(),
  "model.kl_warmup_steps": integer_at_least(0),
  "model.kl_warmup_start": number_at_least(0),
  "model.gan.regularizer_weight": number_at_least(0),
  "model.gan.ema_decay": number_in(0, 1),
  "model.gan.pack_size": integer_at_least(1),
  "model.gan.discriminator_steps": integer_at_least(1),
  "model.diffusion.num_timesteps": integer_at_least(1),
  "model.diffusion.schedule": one_of("linear", "cosine"),
  "model.diffusion.beta_start": number_strictly_between(0, 1),
  "model.diffusion.beta_end": number_strictly_between(0, 1),
  "model.diffusion.cosine_offset": number_above(0),
  "model.diffusion.variance": one_of("large", "small"),
  "model.diffusion.sampler": one_of("ddpm", "ddim"),
  "model.diffusion.sampling_steps": integer_at_least(1),
  "model.diffusion.clip_denoised": boolean(),
  "model.diffusion.ema_decay": number_in(0, 1),
  "model.diffusion.width": integer_at_least(4),
  "model.diffusion.num_temporal_layers": integer_at_least(1),
  "model.diffusion.shared_temporal_layers": boolean(),
  "model.diffusion.channels": integer_at_least(1),
  "model.diffusion.channel_multipliers": Rule(
    lambda v: isinstance(v, (tuple, list)) and len(v) >= 1 and widths().check(v),
    "a non-empty tuple of integers >= 1",
  ),
  "model.diffusion.res_blocks_per_level": integer_at_least(1),
  "model.diffusion.attention": boolean(),
  "model.diffusion.norm_groups": integer_at_least(1),
  "model.diffusion.label_dropout": number_in(0, 1),
  "model.diffusion.guidance_scale": number_at_least(0),
  "optimizer.learning_rate": number_above(0),
  "optimizer.warmup_steps": integer_at_least(0),
  "optimizer.decay_fraction": number_from_to(0, 1),
  "optimizer.final_learning_rate_factor": number_from_to(0, 1),
  "optimizer.b1": number_in(0, 1),
  "optimizer.b2": number_in(0, 1),
  "optimizer.eps": number_above(0),
  "optimizer.weight_decay": number_at_least(0),
  "optimizer.momentum": number_in(0, 1),
  "optimizer.grad_clip_norm": number_at_least(0),
  "train.batch_size": integer_at_least(1),
  "train.num_steps": integer_at_least(1),
  "train.log_every": integer_at_least(0),
  "train.eval_every": integer_at_least(0),
  "train.eval_batch_size": integer_at_least(1),
  "train.sample_every": integer_at_least(0),
  "train.num_samples": integer_at_least(1),
  "checkpoint.save_every": integer_at_least(0),
  "checkpoint.keep_last": integer_at_least(1),
  "checkpoint.keep_best": integer_at_least(0),
  "checkpoint.best_mode": one_of("min", "max"),
}

# Keys a resumed run may change: they change what is logged, kept or read, not the training.
# `train.num_steps` may only grow, and only when the learning-rate schedule does not depend
# on it (see `check_resume`); `train.parallel` gives the same numbers either way (tested).
CHANGEABLE_ON_RESUME = frozenset(
  {
    "train.num_steps",
    "train.log_every",
    "train.eval_every",
    "train.sample_every",
    "train.num_samples",
    "train.eval_batch_size",
    "train.parallel",
    "checkpoint.save_every",
    "checkpoint.keep_last",
    "checkpoint.keep_best",
    "checkpoint.async_save",
    "dataset.data_dir",
  }
)


# What a run is. A checkpoint of one cannot continue as another, even with
# allow_config_change: the parameters of another family or body have another structure (the
# checkpoint would fail to fit, listing every parameter), and another dataset makes the saved
# data position and the curves meaningless. Checked before anything else about a resume.
WHAT_THE_RUN_IS = ("model.family", "model.encoder.body", "model.decoder.body", "dataset.name")


def as_flat_dict(config) -> Dict[str, Any]:
  """A ConfigDict or nested JSON dict -> `{"train.num_steps": 1500, ...}` of JSON values."""
  if isinstance(config, ml_collections.ConfigDict):
    config = json.loads(config.to_json_best_effort())
  flat = {}

  def walk(prefix, node):
    for key, value in node.items():
      if isinstance(value, dict):
        walk(f"{prefix}{key}.", value)
      else:
        flat[prefix + key] = value

  walk("", config)
  return flat


def missing_keys(config, reference) -> List[str]:
  """Dotted keys of `reference` that `config` lacks, a whole missing section as one key
  (`["train", "model.latent_dim"]`). Both: ConfigDicts or nested dicts."""
  missing = []

  def walk(prefix, node, reference_node):
    for key, value in reference_node.items():
      if not isinstance(node, (ml_collections.ConfigDict, dict)) or key not in node:
        missing.append(prefix + key)
      elif isinstance(value, (ml_collections.ConfigDict, dict)):
        walk(f"{prefix}{key}.", node[key], value)

  walk("", config, reference)
  return missing


def config_from_json(tree: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A run's saved config (the nested dict of its `config.json`) -> a ConfigDict.

  JSON has no tuples; config files write every sequence as one (widths, imports), and an
  override such as `--config.model.encoder.widths=(8,16)` parses by the field's type, so
  lists become tuples.
  """

  def convert(value):
    if isinstance(value, dict):
      return ml_collections.ConfigDict({k: convert(v) for k, v in value.items()})
    if isinstance(value, list):
      return tuple(convert(v) for v in value)
    return value

  return convert(dict(tree))


def check_config(
  config: ml_collections.ConfigDict, sections: Optional[Sequence[str]] = None
) -> None:
  """Raises ConfigError naming every value outside its rule's range, in one line; then the
  batch sizes' divisibility on one device (`check_batch_sizes`).

  Args:
    config: an experiment config, or the part of one that a caller builds from.
    sections: the top-level sections (and keys) whose rules apply, e.g. `("model", "train")`;
      None: every rule. The batch sizes are checked when "model" and "train" are both in.

  Reads nothing but the config (and whether `dataset.data_dir` exists).
  """
  values = {}
  for key in RULES:
    if sections is not None and key.split(".")[0] not in sections:
      continue
    node, found = config, True
    for part in key.split("."):
      if isinstance(node, (ml_collections.ConfigDict, dict)) and part in node:
        node = node[part]
      else:
        found = False
        break
    if found:
      values[key] = node
  problems = [
    f"{key} is {values[key]!r} (allowed: {RULES[key].allowed})"
    for key in RULES
    if key in values and not RULES[key].check(values[key])
  ]
  if problems:
    raise ConfigError(
      f"Invalid config value{'s' if len(problems) > 1 else ''}: {'; '.join(problems)}."
    )
  if (
    "model" in config
    and "train" in config
    and (sections is None or {"model", "train"} <= set(sections))
  ):
    check_batch_sizes(config)


def _batch_multiples(config: ml_collections.ConfigDict) -> Dict[str, Tuple[int, str]]:
  """What each global batch must hold whole units of, and the units in words.

  A GAN's discriminator judges packs of `model.gan.pack_size` (m) samples, and with
  `discriminator_steps` (k) updates each takes a chunk of the batch: a training batch holds
  whole m * k, an evaluation batch whole packs. Other families: 1.
  """
  if config.model.get("family") != "gan":
    return {"batch_size": (1, ""), "eval_batch_size": (1, "")}
  m, k = config.model.gan.pack_size, config.model.gan.discriminator_steps
  return {
    "batch_size": (m * k, f"model.gan.pack_size={m} x discriminator_steps={k}"),
    "eval_batch_size": (m, f"model.gan.pack_size={m}"),
  }


def check_batch_sizes(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
  """`train.batch_size` and `train.eval_batch_size` split evenly over `num_devices` (all
  devices of all hosts), each device's share in whole GAN packs and discriminator chunks;
  else one ConfigError naming the batch. Call after the ranges (`check_config`) pass."""
  multiples = _batch_multiples(config)
  for key in ("batch_size", "eval_batch_size"):
    value = config.train[key]
    multiple, units = multiples[key]
    if value % multiple:
      raise ConfigError(f"train.{key}={value} is not divisible by {multiple} ({units}).")
    if value % num_devices:
      raise ConfigError(
        f"train.{key} is {value}, which does not split over the {num_devices} devices of "
        f"this run (allowed: a multiple of {num_devices})."
      )
    per_device = value // num_devices
    if per_device % multiple:
      m, k = config.model.gan.pack_size, config.model.gan.discriminator_steps
      divisor = (
        f"model.gan.pack_size * discriminator_steps = {multiple}"
        if key == "batch_size" and k > 1
        else f"model.gan.pack_size = {m}"
      )
      raise ConfigError(
        f"The per-device train.{key} must be divisible by {divisor}, got "
        f"{per_device}; change the batch size or the number of devices."
      )


_ABSENT = object()  # A key one of the two configs lacks (it came with a newer version).


def _show(value) -> str:
  return "absent" if value is _ABSENT else json.dumps(value)


# Keys added after runs were saved without them, with the value that trains as those runs did:
# a saved config that lacks one reads as holding this value (so a run of an older version
# resumes without --allow_config_change when it keeps the default).
ADDED_KEYS = {
  "optimizer.decay_fraction": 0.0,
  "optimizer.final_learning_rate_factor": 0.0,
}


def config_changes(saved, new) -> Dict[str, Tuple[Any, Any]]:
  """`{key: (saved value, new value)}` of every dotted key whose value differs (a key of
  `ADDED_KEYS` missing from `saved` reads as its value there)."""
  saved, new = as_flat_dict(saved), as_flat_dict(new)
  saved = {**{k: v for k, v in ADDED_KEYS.items() if k in new}, **saved}
  return {
    key: (saved.get(key, _ABSENT), new.get(key, _ABSENT))
    for key in sorted(set(saved) | set(new))
    if saved.get(key, _ABSENT) != new.get(key, _ABSENT)
  }


# `(optimizer section, num_steps) -> (step -> learning rate)`: training's schedules
# (`training.optimizers.learning_rate_schedule`), passed in so that this module needs no optax.
LearningRateSchedule = Callable[[ml_collections.ConfigDict, int], Callable[[int], Any]]


def schedule_depends_on_num_steps(
  learning_rate_schedule: LearningRateSchedule,
  optimizer: ml_collections.ConfigDict,
  saved_steps: int,
  new_steps: int,
) -> bool:
  """Whether the learning rate over steps [0, saved_steps] differs between the two lengths."""
  before = learning_rate_schedule(optimizer, saved_steps)
  after = learning_rate_schedule(optimizer, new_steps)
  probes = sorted({int(round(s)) for s in (saved_steps * i / 64 for i in range(65))})
  return any(
    not math.isclose(float(before(s)), float(after(s)), rel_tol=1e-6, abs_tol=1e-12) for s in probes
  )


def _check_same_run(
  saved: Mapping[str, Any], config: ml_collections.ConfigDict, step: int, where: str
) -> None:
  """One line if `config` trains another kind of run than the checkpoint's (WHAT_THE_RUN_IS)."""
  saved_flat, new_flat = as_flat_dict(saved), as_flat_dict(config)
  changed = [
    key for key in WHAT_THE_RUN_IS if saved_flat.get(key, _ABSENT) != new_flat.get(key, _ABSENT)
  ]
  if not changed:
    return

  def run(flat):
    return f"{flat.get('model.family', '?')} on {flat.get('dataset.name', '?')}"

  shown = ", ".join(
    f"{key} {_show(saved_flat.get(key, _ABSENT))} -> {_show(new_flat.get(key, _ABSENT))}"
    for key in changed
  )
  raise ConfigError(
    f"The checkpoint in {where} (step {step}) is of a {run(saved_flat)} run; this config "
    f"trains a {run(new_flat)} ({shown}), which cannot continue it: pass --fresh to start "
    "a new run here (the earlier one is moved to discarded/), or another --workdir."
  )


def check_resume(
  saved: Mapping[str, Any],
  config: ml_collections.ConfigDict,
  step: int,
  where: str,
  allow_config_change: bool,
  *,
  learning_rate_schedule: LearningRateSchedule,
) -> Dict[str, Any]:
  """Checks that `config` may resume a checkpoint of `step` saved with config `saved`.

  Args:
    saved: the checkpoint's config (nested JSON dict).
    config: the config of this run.
    step: the checkpoint's step.
    where: the checkpoint directory, for messages.
    allow_config_change: accept changes outside CHANGEABLE_ON_RESUME (and a longer run under
      a schedule that depends on `train.num_steps`).
    learning_rate_schedule: `(config.optimizer, num_steps) -> schedule`, to tell whether a
      longer run changes the learning rate of the steps already trained.

  Returns:
    The record of this resume: `{"changes": {key: {"saved": a, "new": b}}, "forced": [keys
    changed only because of allow_config_change]}`.
  Raises:
    ConfigError (one line) if a key of WHAT_THE_RUN_IS changed (whatever
    `allow_config_change`), if `train.num_steps` is below `step`, or if keys outside
    CHANGEABLE_ON_RESUME changed without `allow_config_change`.
  """
  _check_same_run(saved, config, step, where)
  num_steps = config.train.num_steps
  if num_steps < step:
    raise ConfigError(
      f"train.num_steps is {num_steps} but the checkpoint in {where} is at step {step}; a "
      f"run cannot be shortened: pass --config.train.num_steps above {step} to train "
      "further, or --fresh to start a new run."
    )
  changes = config_changes(saved, config)
  refused = [key for key in changes if key not in CHANGEABLE_ON_RESUME]
  saved_steps = changes.get("train.num_steps", (num_steps,))[0]
  if (
    "train.num_steps" in changes
    and isinstance(saved_steps, int)
    and "optimizer.schedule" not in changes
    and schedule_depends_on_num_steps(
      learning_rate_schedule, config.optimizer, saved_steps, num_steps
    )
  ):
    refused.append("train.num_steps")
  if refused and not allow_config_change:
    shown = ", ".join(
      f"{key} {_show(changes[key][0])} -> {_show(changes[key][1])}" for key in sorted(refused)
    )
    schedule = (
      " (the learning-rate schedule optimizer.schedule="
      f"{config.optimizer.schedule!r} depends on train.num_steps)"
      if "train.num_steps" in refused
      else ""
    )
    raise ConfigError(
      f"The checkpoint in {where} (step {step}) was trained with other values of "
      f"{shown}{schedule}; resume with the saved values, pass --allow_config_change to "
      "resume with the new ones anyway (recorded in resumes.jsonl), or --fresh to start "
      "a new run."
    )
  return {
    "changes": {
      key: {"saved": None if old is _ABSENT else old, "new": None if new is _ABSENT else new}
      for key, (old, new) in changes.items()
    },
    "forced": sorted(refused),
  }
