"""Optax optimisers built from `config.optimizer`."""

import ml_collections
import optax

from aigc_jax.registry import Registry

SCHEDULES = Registry("learning-rate schedule")
SCHEDULES.register("constant")(lambda cfg, num_steps: optax.constant_schedule(cfg.learning_rate))
SCHEDULES.register("warmup_cosine")(
  lambda cfg, num_steps: optax.warmup_cosine_decay_schedule(
    0.0, cfg.learning_rate, cfg.warmup_steps, max(num_steps, cfg.warmup_steps + 1)
  )
)

OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("adam")(lambda cfg, lr: optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))
OPTIMIZERS.register("adamw")(
  lambda cfg, lr: optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
)
OPTIMIZERS.register("sgd")(lambda cfg, lr: optax.sgd(lr, momentum=cfg.momentum or None))


def learning_rate_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """The `cfg.schedule` learning rate of a run of `num_steps` steps, as a function of the step."""
  return SCHEDULES.get(cfg.schedule)(cfg, num_steps)


def build_optimizer(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
  """`cfg.name` optimiser with `cfg.schedule` learning rate, after optional norm clipping.

  `cfg.grad_clip_norm > 0` clips the global gradient norm first (optax.clip_by_global_norm).
  """
  optimizer = OPTIMIZERS.get(cfg.name)(cfg, learning_rate_schedule(cfg, num_steps))
  if cfg.grad_clip_norm > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), optimizer)
  return optimizer
