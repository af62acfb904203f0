"""Every knob of `config.optimizer` reaches the update.

Each optimiser is built FROM A CONFIG by `optimizers.build_optimizer` and applied to a small
parameter tree with fixed gradients; the result is compared with a float64 numpy
implementation of the update rules written out here (Adam, AdamW, SGD with momentum, global
norm clipping, the schedules), and each knob is shown to change the result (a builder that
ignored it, e.g. a hard-coded `b1=0.9`, fails). Then the knob is followed through the whole
family path (`get_family(config)`, two train steps): the GAN's generator and discriminator,
the VAE and the diffusion denoiser end at the numpy update of the gradients their steps
computed.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from aigc_jax import config_rules, data
from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.training import optimizers
from aigc_jax.training.family import build_family, get_family
from aigc_jax.training.parallel import on_one_device
from experiments.configs import base
from tests.training import helpers

# float32 updates against float64: relative error of a few ulps of the parameters.
TOLERANCE = 2e-6
# A knob "changes the result" when ignoring it moves some parameter by more than this.
CHANGE = 1e-3


# --- The float64 reference ------------------------------------------------------------------


def reference_learning_rate(cfg: ml_collections.ConfigDict, num_steps: int, step: int) -> float:
  """The learning rate of the update of `step` (0-based), written out from base.py's comments."""
  peak = cfg.learning_rate
  final = peak * cfg.final_learning_rate_factor
  warmup = cfg.warmup_steps
  if cfg.schedule == "constant":
    return peak
  if step < warmup:
    return peak * step / warmup
  if cfg.schedule == "warmup_cosine":
    length = max(num_steps, warmup + 1) - warmup
    progress = min(step - warmup, length) / length
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
  assert cfg.schedule == "warmup_linear_decay"
  decay_steps = int(round(cfg.decay_fraction * num_steps))
  decay_start = num_steps - decay_steps
  if step < decay_start or not decay_steps:  # No decay: the peak, step num_steps too.
    return peak
  return peak + (final - peak) * (step - decay_start) / decay_steps


def reference_updates(cfg, num_steps, params, gradients):
  """`params` after one update per entry of `gradients` (trees of float64 numpy arrays)."""
  leaves, treedef = jax.tree.flatten(params)
  p = [np.asarray(x, np.float64) for x in leaves]
  first_moment = [np.zeros_like(x) for x in p]
  second_moment = [np.zeros_like(x) for x in p]
  for t, grads in enumerate(gradients):
    g = [np.asarray(x, np.float64) for x in jax.tree.leaves(grads)]
    if cfg.grad_clip_norm > 0:
      norm = math.sqrt(sum(float(np.sum(x**2)) for x in g))
      if norm >= cfg.grad_clip_norm:
        g = [x * cfg.grad_clip_norm / norm for x in g]
    lr = reference_learning_rate(cfg, num_steps, t)
    for i in range(len(p)):
      if cfg.name == "sgd":
        # optax.trace: m = g + momentum * m; no momentum when it is 0.
        first_moment[i] = g[i] + cfg.momentum * first_moment[i]
        p[i] = p[i] - lr * first_moment[i]
        continue
      b1, b2, count = cfg.b1, cfg.b2, t + 1
      first_moment[i] = b1 * first_moment[i] + (1 - b1) * g[i]
      second_moment[i] = b2 * second_moment[i] + (1 - b2) * g[i] ** 2
      m_hat = first_moment[i] / (1 - b1**count)
      v_hat = second_moment[i] / (1 - b2**count)
      direction = m_hat / (np.sqrt(v_hat) + cfg.eps)
      if cfg.name == "adamw":
        direction = direction + cfg.weight_decay * p[i]  # Decoupled: on the parameters.
      else:
        assert cfg.name == "adam"
      p[i] = p[i] - lr * direction
  return jax.tree.unflatten(treedef, p)


# --- The optimiser alone, on fixed gradients --------------------------------------------------

_RNG = np.random.RandomState(0)
PARAMS = {"dense": {"kernel": _RNG.randn(3, 2), "bias": _RNG.randn(2)}, "scale": _RNG.randn(4)}
# Two different, non-proportional gradients (b1 and b2 only show from the second update on,
# after Adam's bias correction); a global norm of about 3.5 and 5.
GRADIENTS = [jax.tree.map(lambda x: _RNG.randn(*x.shape), PARAMS) for _ in range(2)]
SMALL_GRADIENTS = [jax.tree.map(lambda g: 1e-3 * g, grads) for grads in GRADIENTS]


def optimizer_config(name: str = "adam", **knobs) -> ml_collections.ConfigDict:
  cfg = base.get_base_config().optimizer
  cfg.name = name
  cfg.learning_rate = 0.1
  for key, value in knobs.items():
    cfg[key] = value
  return cfg


def project_updates(cfg, num_steps, params, gradients):
  """`params` after `build_optimizer(cfg, num_steps)` applied once per gradient, float32."""
  tx = optimizers.build_optimizer(cfg, num_steps)
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state = tx.init(params)
  for grads in gradients:
    grads = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return jax.device_get(params)


# (optimizer, knob, value under test, its default in base.py, gradients)
KNOB_CASES = [
  ("adam", "learning_rate", 0.03, 0.1, GRADIENTS),
  ("adam", "b1", 0.5, 0.9, GRADIENTS),
  ("adam", "b1", 0.0, 0.9, GRADIENTS),
  ("adam", "b2", 0.9, 0.999, GRADIENTS),
  ("adam", "eps", 1e-2, 1e-8, SMALL_GRADIENTS),  # eps matters against small gradients.
  ("adam", "grad_clip_norm", 1.0, 0.0, GRADIENTS),
  ("adamw", "b1", 0.5, 0.9, GRADIENTS),
  ("adamw", "b2", 0.9, 0.999, GRADIENTS),
  ("adamw", "eps", 1e-2, 1e-8, SMALL_GRADIENTS),
  ("adamw", "weight_decay", 0.1, 0.0, GRADIENTS),
  ("sgd", "learning_rate", 0.03, 0.1, GRADIENTS),
  ("sgd", "momentum", 0.5, 0.0, GRADIENTS),
  ("sgd", "grad_clip_norm", 1.0, 0.0, GRADIENTS),
]


@pytest.mark.parametrize("name,knob,value,default,gradients", KNOB_CASES)
def test_each_knob_reaches_two_updates(name, knob, value, default, gradients):
  cfg = optimizer_config(name, **{knob: value})
  got = project_updates(cfg, 10, PARAMS, gradients)
  assert helpers.max_abs_difference(got, reference_updates(cfg, 10, PARAMS, gradients)) < (
    TOLERANCE
  )
  ignored = reference_updates(optimizer_config(name, **{knob: default}), 10, PARAMS, gradients)
  assert helpers.max_abs_difference(got, ignored) > CHANGE


def test_the_optimizer_name_chooses_the_rule():
  """adam, adamw (weight decay 0.1) and sgd give three different, each correct, results."""
  results = {}
  for name in ("adam", "adamw", "sgd"):
    cfg = optimizer_config(name, weight_decay=0.1)
    results[name] = project_updates(cfg, 10, PARAMS, GRADIENTS)
    expected = reference_updates(cfg, 10, PARAMS, GRADIENTS)
    assert helpers.max_abs_difference(results[name], expected) < TOLERANCE
  for a, b in (("adam", "adamw"), ("adam", "sgd"), ("adamw", "sgd")):
    assert helpers.max_abs_difference(results[a], results[b]) > CHANGE
  with pytest.raises(UnknownNameError, match="adamax"):
    optimizers.build_optimizer(optimizer_config("adamax"), 10)


# (schedule, knobs, the run's length): every knob of each schedule away from its default.
SCHEDULE_CASES = [
  ("constant", {}, 12),
  ("warmup_cosine", {"warmup_steps": 3}, 12),
  ("warmup_cosine", {"warmup_steps": 3, "final_learning_rate_factor": 0.25}, 12),
  ("warmup_cosine", {"warmup_steps": 0}, 12),
  ("warmup_linear_decay", {"warmup_steps": 3, "decay_fraction": 0.5}, 12),
  ("warmup_linear_decay", {"warmup_steps": 2, "decay_fraction": 0.25}, 12),
  (
    "warmup_linear_decay",
    {"warmup_steps": 0, "decay_fraction": 0.5, "final_learning_rate_factor": 0.1},
    12,
  ),
  ("warmup_linear_decay", {"warmup_steps": 4, "decay_fraction": 0.0}, 12),
  ("warmup_linear_decay", {"warmup_steps": 0, "decay_fraction": 1.0}, 10),
]


@pytest.mark.parametrize("schedule,knobs,num_steps", SCHEDULE_CASES)
def test_schedules_equal_their_formulas_at_every_step(schedule, knobs, num_steps):
  cfg = optimizer_config(schedule=schedule, **knobs)
  rates = optimizers.learning_rate_schedule(cfg, num_steps)
  for step in range(num_steps + 1):
    expected = reference_learning_rate(cfg, num_steps, step)
    assert abs(float(rates(step)) - expected) < 1e-7, step


@pytest.mark.parametrize("schedule,knobs,num_steps", SCHEDULE_CASES)
def test_the_schedule_sets_the_rate_of_each_update(schedule, knobs, num_steps):
  """SGD over the whole run: update t moves the parameters by -rate(t) * gradient_t."""
  cfg = optimizer_config("sgd", schedule=schedule, **knobs)
  gradients = [GRADIENTS[t % 2] for t in range(num_steps)]
  got = project_updates(cfg, num_steps, PARAMS, gradients)
  assert helpers.max_abs_difference(got, reference_updates(cfg, num_steps, PARAMS, gradients)) < (
    TOLERANCE
  )
  constant = reference_updates(
    optimizer_config("sgd", schedule="constant"), num_steps, PARAMS, gradients
  )
  if schedule != "constant":
    assert helpers.max_abs_difference(got, constant) > CHANGE


@pytest.mark.parametrize(
  "knob,value,baseline",
  [
    ("warmup_steps", 5, 0),
    ("decay_fraction", 0.5, 0.0),
    ("final_learning_rate_factor", 0.5, 0.0),
  ],
)
def test_each_schedule_knob_changes_the_rates(knob, value, baseline):
  def rates(v):
    knobs = {"warmup_steps": 2, "decay_fraction": 0.25, knob: v}
    cfg = optimizer_config(schedule="warmup_linear_decay", **knobs)
    schedule = optimizers.learning_rate_schedule(cfg, 20)
    return np.array([float(schedule(t)) for t in range(21)])

  assert np.max(np.abs(rates(value) - rates(baseline))) > 1e-3


def test_a_warmup_and_decay_longer_than_the_run_is_refused():
  cfg = optimizer_config(schedule="warmup_linear_decay", warmup_steps=8, decay_fraction=0.5)
  with pytest.raises(ConfigError, match=r"warmup_steps=8 plus the 5 decay steps .* exceed"):
    optimizers.build_optimizer(cfg, 10)


@pytest.mark.parametrize(
  "key,value",
  [("decay_fraction", 1.5), ("decay_fraction", -0.1), ("final_learning_rate_factor", 2.0)],
)
def test_rules_bound_the_new_schedule_knobs(key, value):
  config = base.get_base_config()
  config.optimizer[key] = value
  with pytest.raises(
    ConfigError, match=rf"optimizer.{key} is .* \(allowed: a number in \[0, 1\]\)"
  ):
    config_rules.check_config(config, sections=("optimizer",))


def test_a_resume_may_not_extend_a_run_whose_decay_depends_on_its_length():
  cfg = optimizer_config(schedule="warmup_linear_decay", decay_fraction=0.5)
  assert config_rules.schedule_depends_on_num_steps(optimizers.learning_rate_schedule, cfg, 10, 20)
  cfg.decay_fraction = 0.0
  cfg.warmup_steps = 3
  assert not config_rules.schedule_depends_on_num_steps(
    optimizers.learning_rate_schedule, cfg, 10, 20
  )


# --- Through the family: the knob reaches each network's update --------------------------------


def _recording():
  """An optax transformation that passes updates through and keeps the last ones as its state:
  chained before the project's optimiser, its state is the gradient the step handed over."""
  return optax.GradientTransformation(
    lambda params: jax.tree.map(jnp.zeros_like, params),
    lambda updates, state, params=None: (
      updates,
      updates,
    ),
  )


def _family_config(family: str, b1: float) -> ml_collections.ConfigDict:
  config = base.get_base_config()
  config.dataset.name = "gaussian_ring8"
  config.model.family = family
  config.model.latent_dim = 2
  config.model.encoder = base.body("mlp", (8,), "relu")
  config.model.decoder = base.body("mlp", (8,), "relu")
  config.model.output_range = "unbounded"
  config.model.likelihood = "gaussian"
  config.model.gan.generator_output = "linear"
  config.model.diffusion.num_timesteps = 10
  config.model.diffusion.sampling_steps = 10
  config.model.diffusion.width = 6
  config.model.diffusion.num_temporal_layers = 1
  config.model.diffusion.ema_decay = 0.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 0.01
  config.optimizer.b1 = b1
  config.optimizer.b2 = 0.9  # WGAN-GP's betas are (0, 0.9).
  config.train.batch_size = 8
  config.train.num_steps = 2
  return config


def _networks(family: str, state):
  """{network name: TrainState} of a family's state."""
  if family == "gan":
    return {"generator": state.generator, "discriminator": state.discriminator}
  return {"model": state}


def _two_steps(family_, batches):
  """The initial state and the states after each of two jitted train steps (host copies)."""
  step = jax.jit(on_one_device(family_.train_step))
  state = family_.init(jax.random.PRNGKey(0))
  states = [jax.device_get(state)]
  for batch in batches:
    state, _ = step(state, batch, jax.random.PRNGKey(1))
    states.append(jax.device_get(state))
  return states


@pytest.mark.parametrize("family", ["gan", "vae", "diffusion"])
def test_b1_reaches_every_network_through_the_family(family):
  rng = np.random.RandomState(1)
  batches = [
    {
      "image": rng.randn(8, 2).astype(np.float32),
      "label": np.zeros(8, np.int32),
      "mask": np.ones(8, np.float32),
    }
    for _ in range(2)
  ]
  final = {}
  for b1 in (0.0, 0.5):
    config = _family_config(family, b1)
    # The project's own path, as training builds it.
    states = _two_steps(get_family(config, (2,)), batches)
    if b1 == 0.0:
      final[b1] = _networks(family, states[-1])
      continue  # Only to show that b1 changes the result: checked against numpy at 0.5.
    # The same family with the gradients recorded (updates pass through unchanged).
    recorded = _two_steps(
      build_family(
        config.model,
        (2,),
        num_classes=data.get_dataset_spec(config.dataset.name).num_classes,
        optimizer=optax.chain(
          _recording(), optimizers.build_optimizer(config.optimizer, config.train.num_steps)
        ),
      ),
      batches,
    )
    final[b1] = _networks(family, states[-1])
    for name, network in final[b1].items():
      recorded_networks = [_networks(family, s)[name] for s in recorded]
      # Not bitwise: XLA fuses the chained updates differently (about 1e-9 here).
      assert helpers.max_abs_difference(network.params, recorded_networks[-1].params) < 1e-7
      gradients = [n.opt_state[0] for n in recorded_networks[1:]]
      expected = reference_updates(
        config.optimizer, config.train.num_steps, recorded_networks[0].params, gradients
      )
      assert helpers.max_abs_difference(network.params, expected) < TOLERANCE, name
  for name in final[0.0]:
    assert helpers.max_abs_difference(final[0.0][name].params, final[0.5][name].params) > CHANGE
