"""Optax optimisers built from `config.optimizer`.

Every knob of the section reaches the update (tests/training/test_optimizer_knobs.py checks
each against a float64 computation written out by hand).
"""

import ml_collections
import optax

from aigc_jax.errors import ConfigError
from aigc_jax.registry import Registry


def _decay_steps(cfg: ml_collections.ConfigDict, num_steps: int) -> int:
  """The final steps of a `warmup_linear_decay` run over which the learning rate falls."""
  decay_steps = int(round(cfg.decay_fraction * num_steps))
  if cfg.warmup_steps + decay_steps > num_steps:
    raise ConfigError(
      f"optimizer.warmup_steps={cfg.warmup_steps} plus the {decay_steps} decay steps "
      f"(optimizer.decay_fraction={cfg.decay_fraction} of train.num_steps={num_steps}) exceed "
      "the run; lower one of the two."
    )
  return decay_steps


def _warmup_linear_decay(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """0 -> learning_rate linearly over warmup_steps, constant, then linearly to
  learning_rate * final_learning_rate_factor at step num_steps over the last
  round(decay_fraction * num_steps) steps."""
  decay_steps = _decay_steps(cfg, num_steps)
  peak = cfg.learning_rate
  return optax.join_schedules(
    [
      optax.linear_schedule(0.0, peak, cfg.warmup_steps),
      optax.constant_schedule(peak),
      optax.linear_schedule(peak, peak * cfg.final_learning_rate_factor, decay_steps),
    ],
    boundaries=[cfg.warmup_steps, num_steps - decay_steps],
  )


SCHEDULES = Registry("learning-rate schedule")
SCHEDULES.register("constant")(lambda cfg, num_steps: optax.constant_schedule(cfg.learning_rate))
SCHEDULES.register("warmup_cosine")(
  lambda cfg, num_steps: optax.warmup_cosine_decay_schedule(
    0.0,
    cfg.learning_rate,
    cfg.warmup_steps,
    max(num_steps, cfg.warmup_steps + 1),
    end_value=cfg.learning_rate * cfg.final_learning_rate_factor,
  )
)
SCHEDULES.register("warmup_linear_decay")(_warmup_linear_decay)

OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("adam")(lambda cfg, lr: optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))
OPTIMIZERS.register("adamw")(
  lambda cfg, lr: optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
)
OPTIMIZERS.register("sgd")(lambda cfg, lr: optax.sgd(lr, momentum=cfg.momentum or None))


def learning_rate_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """The `cfg.schedule` learning rate of a run of `num_steps` steps, as a function of the step.

  The update of step t (0-based: the first update is t = 0) uses the rate at t.
  """
  return SCHEDULES.get(cfg.schedule)(cfg, num_steps)


def build_optimizer(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
  """`cfg.name` optimiser with `cfg.schedule` learning rate, after optional norm clipping.

  `cfg` is the `config.optimizer` section. `cfg.grad_clip_norm > 0` clips the global gradient
  norm first (optax.clip_by_global_norm), before Adam's moments or SGD's momentum see it.
  """
  optimizer = OPTIMIZERS.get(cfg.name)(cfg, learning_rate_schedule(cfg, num_steps))
  if cfg.grad_clip_norm > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), optimizer)
  return optimizer
