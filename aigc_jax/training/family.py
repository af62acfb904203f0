"""What a model family gives the one training loop: init, per-device steps, sampling.

Families differ in their networks, losses and states, not in how they train: the loop in
`training.loop` drives any `Family`. A step is written for ONE device and averages with
`jax.lax.pmean` over `noise.BATCH_AXIS`; `training.parallel` maps it over devices.

A family is built from its config section alone: a builder registered in `FAMILIES` takes
`(model, sample_shape, *, num_classes, optimizer)`, i.e. `config.model`, the shape of one
sample, the dataset's number of classes and the optax optimiser of its networks, as
big_vision builds `model_mod.Model(**config.model)`. `get_family` makes those from an
experiment config, after checking the ranges of what they read (`config_rules.RULES`).

Batches are dicts: `image [per_device, H, W, C]` float32 in [0, 1], `label [per_device]`
int32, `mask [per_device]` float32 (1 real example, 0 padding; only eval batches pad).
"""

import dataclasses
import importlib
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import ml_collections
import optax

from aigc_jax import config_rules, data
from aigc_jax.errors import ConfigError
from aigc_jax.registry import Registry
from aigc_jax.training.optimizers import build_optimizer

State = Any
Batch = Dict[str, jax.Array]
Metrics = Dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Family:
  """The functions of one model family.

  Attributes:
    init: `(key) -> state` on the host, before replication.
    train_step: `(state, batch, key) -> (state, metrics)`; per device, pure. `key` is the
      run's training key; the step folds in `state.step` itself. Metrics are means over the
      global batch (already `pmean`-ed).
    eval_step: `(state, batch, key) -> sums`; per device. Returns `psum`-ed sums over real
      examples of each metric, plus `"weight"`, the number of real examples.
    generate: `(state, key, num, labels=None) -> samples [num, *sample_shape]`, single
      device; images in [0, 1]. `labels` `[num]` int32 are the classes asked for; a
      conditional family needs them, an unconditional one ignores them (None). None for
      families that cannot sample (the plain autoencoder).
    reconstruct: `(state, images, key, labels=None) -> images`, both `[N, *sample_shape]`,
      single device; `labels` `[N]` int32 as for `generate`. None for families without an
      encoder (the GAN).
    conditional: True when the family's networks take class labels (`batch["label"]` in
      training, `labels` in `generate` / `reconstruct`).
    encode: `(state, images, labels=None) -> codes [N, latent_dim]`, single device: the
      deterministic code (the VAE's posterior mean) that `reconstruct` decodes. None for
      families without an encoder.
    decode: `(state, codes, labels=None) -> samples [N, *sample_shape]`, single device, in the
      data's range: `reconstruct(x) == decode(encode(x))`. None without an encoder.
  """

  init: Callable[[jax.Array], State]
  train_step: Callable[[State, Batch, jax.Array], Tuple[State, Metrics]]
  eval_step: Callable[[State, Batch, jax.Array], Metrics]
  generate: Optional[Callable[..., jax.Array]]
  reconstruct: Optional[Callable[..., jax.Array]]
  conditional: bool = False
  encode: Optional[Callable[..., jax.Array]] = None
  decode: Optional[Callable[..., jax.Array]] = None


# `(model, sample_shape, *, num_classes, optimizer) -> Family`: `model` is the experiment's
# `config.model` section, already checked against `config_rules.RULES`; `sample_shape` is
# (H, W, C) for images or e.g. (2,) for points; `num_classes` the dataset's (conditional
# families and the classifier use it); `optimizer` the optax transformation of every network.
FamilyFactory = Callable[..., Family]
FAMILIES = Registry[FamilyFactory]("model family")

# The config sections `get_family` reads: their rules are checked before a family is built.
# Not `dataset.data_dir`: a saved run's config must build where its data directory is absent.
_SECTIONS_READ = ("model", "optimizer", "train")


def import_config_modules(model: ml_collections.ConfigDict) -> None:
  """Imports the modules named in `model.imports` (the `config.model` section), so their
  registrations exist.

  This is how a variant living in its own file (a family, body, likelihood, corruption...)
  is found by name, in training and in a later evaluation that reads the saved config.
  """
  for name in model.get("imports", ()):
    try:
      importlib.import_module(name)
    except ModuleNotFoundError as e:
      if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
        raise  # The module exists but one of its own imports is missing: a bug, not a typo.
      raise ConfigError(
        f"model.imports names {name!r}, which cannot be imported ({e}); give a "
        "module path importable from the working directory."
      ) from None


def build_family(
  model: ml_collections.ConfigDict,
  sample_shape: Tuple[int, ...],
  *,
  num_classes: int,
  optimizer: optax.GradientTransformation,
) -> Family:
  """The family named by `model.family` (a `config.model` section), for samples of
  `sample_shape`, after `import_config_modules(model)`. The caller checks the section's
  ranges (`config_rules.check_config`); `get_family` does."""
  import_config_modules(model)
  return FAMILIES.get(model.family)(
    model, tuple(sample_shape), num_classes=num_classes, optimizer=optimizer
  )


def get_family(
  config: ml_collections.ConfigDict,
  sample_shape: Tuple[int, ...],
  optimizer: Optional[optax.GradientTransformation] = None,
) -> Family:
  """The family of an experiment config: `build_family` on `config.model`, with the
  dataset's number of classes and the optimiser of `config.optimizer` over
  `config.train.num_steps`, once the rules of those sections pass (one-line ConfigError).

  `optimizer`: another transformation for every network (e.g. `config.optimizer`'s followed
  by a per-member factor, `multi_seed.sweep_family`); None builds `config.optimizer`'s."""
  import_config_modules(config.model)  # First: a module that cannot be imported says so.
  config_rules.check_config(config, sections=_SECTIONS_READ)
  if optimizer is None:
    optimizer = build_optimizer(config.optimizer, config.train.num_steps)
  return build_family(
    config.model,
    sample_shape,
    num_classes=data.get_dataset_spec(config.dataset.name).num_classes,
    optimizer=optimizer,
  )
