"""The diffusion family's maths against independent float64 numpy: the schedules, the forward
posterior, one training step (loss and gradients), one DDPM and one DDIM reverse step, the
samplers on a Gaussian whose optimal denoiser is known in closed form; 8 devices == 1; a run
through `experiments.train`."""

import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import training
from aigc_jax.errors import ConfigError
from aigc_jax.models.denoisers import TemporalMLP
from aigc_jax.training import diffusion
from aigc_jax.training.family import get_family
from experiments.configs import base
from tests.training import helpers
from tests.training import vae_reference as ref

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLOBAL_BATCH = 8
NUM_DEVICES = 4
LEARNING_RATE = 0.5
TRAIN_KEY = jax.random.PRNGKey(1)  # The training key `helpers.run_steps` gives (seed 0 + 1).


def _config(width=6, num_layers=2, shared=True, num_timesteps=10, ema_decay=0.9):
  config = base.get_base_config()
  config.dataset.name = "gaussian_ring8"
  config.model.family = "diffusion"
  config.model.output_range = "unbounded"
  cfg = config.model.diffusion
  cfg.num_timesteps = num_timesteps
  cfg.beta_start = 0.01
  cfg.beta_end = 0.3
  cfg.sampling_steps = num_timesteps
  cfg.ema_decay = ema_decay
  cfg.width = width
  cfg.num_temporal_layers = num_layers
  cfg.shared_temporal_layers = shared
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = LEARNING_RATE
  config.train.batch_size = GLOBAL_BATCH
  config.train.num_steps = 4
  return config


# --- A float64 numpy twin of TemporalMLP ---------------------------------------------------


def _leaky(x):
  return np.where(x >= 0, x, 0.02 * x)


def _layer_norm(p, x):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _embedding(t, dim):
  half = dim // 2
  frequencies = np.exp(-math.log(10000.0) * np.arange(half) / (half - 1))
  angles = np.asarray(t, np.float64)[:, None] * frequencies[None]
  return np.concatenate([np.sin(angles), np.cos(angles)], -1)


def numpy_denoiser(params, x, t, num_layers, shared):
  """eps `[B, D]` of TemporalMLP with float64 `params`, for x `[B, D]`, t `[B]`."""
  width = params["input"]["kernel"].shape[1]
  tp = params["time_projection"]
  emb = _leaky(_embedding(t, width) @ tp["kernel"] + tp["bias"])
  h = x @ params["input"]["kernel"]
  for i in range(num_layers):
    p = params["temporal" if shared else f"temporal_{i}"]
    inner = _leaky(_layer_norm(p["norm1"], h)) @ p["fc1"]["kernel"]
    inner = inner + emb @ p["time"]["kernel"] + p["time"]["bias"]
    h = _leaky(_layer_norm(p["norm2"], inner)) @ p["fc2"]["kernel"] + h
  out = params["output"]
  return _layer_norm(params["output_norm"], h) @ out["kernel"] + out["bias"]


def _denoiser_params(width=6, num_layers=2, shared=True, seed=0):
  """Fixed random params of TemporalMLP on 2-D points (the biases and norms made non-trivial)."""
  module = TemporalMLP(width=width, num_layers=num_layers, shared=shared)
  params = module.init(jax.random.PRNGKey(seed), jnp.zeros((1, 2)), jnp.zeros((1,), jnp.int32))
  leaves, treedef = jax.tree.flatten(params["params"])
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
  leaves = [leaf + 0.3 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
  return module, jax.tree.unflatten(treedef, leaves)


# --- Closed forms -------------------------------------------------------------------------


def _bayes_posterior(x0, x_t, alpha_bar, alpha_bar_prev):
  """q(x_s | x_t, x0) by Bayes' rule: prior x_s ~ N(sqrt(abar_s) x0, 1 - abar_s), likelihood
  x_t | x_s ~ N(sqrt(alpha) x_s, 1 - alpha), alpha = abar_t / abar_s. (mean, variance)."""
  if alpha_bar_prev == 1.0:  # s past the first step: x_s = x0 exactly.
    return x0, 0.0 * x0
  alpha = alpha_bar / alpha_bar_prev
  precision = 1 / (1 - alpha_bar_prev) + alpha / (1 - alpha)
  mean = np.sqrt(alpha_bar_prev) * x0 / (1 - alpha_bar_prev) + np.sqrt(alpha) * x_t / (1 - alpha)
  return mean / precision, 1 / precision


def test_linear_schedule_alpha_bars_are_the_products_of_one_minus_beta():
  schedule = diffusion.make_schedule(_config(num_timesteps=50).model.diffusion)
  betas = 0.01 + (0.3 - 0.01) * np.arange(50) / 49
  np.testing.assert_allclose(schedule.betas, betas, rtol=1e-12)
  expected = np.array([np.prod([1 - b for b in betas[: t + 1]]) for t in range(50)])
  np.testing.assert_allclose(schedule.alpha_bars, expected, rtol=1e-12)


def test_cosine_schedule_alpha_bars_follow_the_cosine():
  cfg = _config(num_timesteps=100).model.diffusion
  cfg.schedule = "cosine"
  schedule = diffusion.make_schedule(cfg)
  s = cfg.cosine_offset
  f = lambda t: np.cos((t / 100 + s) / (1 + s) * np.pi / 2) ** 2
  # abar_t is f(t + 1) / f(0) for every t whose beta is not clipped (all but the last).
  np.testing.assert_allclose(
    schedule.alpha_bars[:-1], f(np.arange(1, 100)) / f(0), rtol=1e-10, atol=1e-14
  )
  assert schedule.betas[-1] == diffusion.COSINE_MAX_BETA


@pytest.mark.parametrize("t, s", [(5, 4), (9, 3), (0, -1)])
def test_posterior_mean_and_variance_are_bayes_rule(t, s):
  alpha_bars = diffusion.make_schedule(_config().model.diffusion).alpha_bars
  alpha_bar, alpha_bar_prev = alpha_bars[t], (alpha_bars[s] if s >= 0 else 1.0)
  rng = np.random.RandomState(0)
  x0, x_t = rng.randn(5, 2), rng.randn(5, 2)
  # The library computes in float32: float32 tolerances against the float64 closed form.
  mean = np.asarray(diffusion.posterior_mean(x0, x_t, alpha_bar, alpha_bar_prev))
  variance = float(diffusion.posterior_variance(alpha_bar, alpha_bar_prev))
  want_mean, want_variance = _bayes_posterior(x0, x_t, alpha_bar, alpha_bar_prev)
  np.testing.assert_allclose(mean, want_mean, rtol=2e-6, atol=2e-6)
  np.testing.assert_allclose(variance, np.max(want_variance), rtol=2e-6, atol=1e-7)


# --- One training step ----------------------------------------------------------------------


def _step_noise(num_timesteps, shape):
  """(t [B], eps [B, *shape]) of step 0, as the module docstring keys them."""
  step_key = jax.random.fold_in(TRAIN_KEY, 0)
  ts, eps = [], []
  for i in range(GLOBAL_BATCH):
    t_key, eps_key = jax.random.split(jax.random.fold_in(step_key, i))
    ts.append(int(jax.random.randint(t_key, (), 0, num_timesteps, jnp.int32)))
    eps.append(np.asarray(jax.random.normal(eps_key, shape), np.float64))
  return np.array(ts), np.stack(eps)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
def test_one_training_step_matches_numpy_loss_and_gradients(shared):
  config = _config(shared=shared)
  batch = helpers.random_point_batches(1, GLOBAL_BATCH, seed=4)[0]
  batch["image"] = 2.0 * batch["image"]  # Points well outside [0, 1]: nothing clips them.
  family = get_family(config, (2,))
  initial = family.init(jax.random.PRNGKey(0))
  parallel = helpers.pmap_on(NUM_DEVICES)
  state, metrics = parallel.compile_train_step(family.train_step)(
    parallel.put_state(initial),
    parallel.put_batch(helpers.device_layout(batch, NUM_DEVICES)),
    TRAIN_KEY,
  )
  state, metrics = jax.device_get((parallel.get_state(state), parallel.first_copy(metrics)))

  alpha_bars = diffusion.make_schedule(config.model.diffusion).alpha_bars
  t, eps = _step_noise(10, (2,))
  assert len(set(t)) > 3  # The examples draw different timesteps.
  x0 = batch["image"].astype(np.float64)
  x_t = np.sqrt(alpha_bars[t])[:, None] * x0 + np.sqrt(1 - alpha_bars[t])[:, None] * eps

  def loss(params):
    return np.mean((numpy_denoiser(params, x_t, t, 2, shared) - eps) ** 2)

  np.testing.assert_allclose(metrics["loss"], loss(ref.to_float64(initial.params)), rtol=1e-5)
  grads = ref.numeric_gradient(loss, initial.params)
  for (path, before), after, grad in zip(
    jax.tree_util.tree_leaves_with_path(initial.params),
    jax.tree.leaves(state.params),
    jax.tree.leaves(grads),
  ):
    moved = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    np.testing.assert_allclose(
      moved, -LEARNING_RATE * grad, rtol=2e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path)
    )
  assert max(np.max(np.abs(g)) for g in jax.tree.leaves(grads)) > 1e-2  # A real move.
  # The EMA moved by (1 - decay) of the step, from the initial params.
  for before, after, ema in zip(
    *map(jax.tree.leaves, (initial.params, state.params, state.ema_params))
  ):
    np.testing.assert_allclose(ema, 0.9 * before + 0.1 * after, rtol=1e-6, atol=1e-7)


def test_shared_layers_have_one_set_of_weights():
  shared = _denoiser_params(num_layers=3, shared=True)[1]
  separate = _denoiser_params(num_layers=3, shared=False)[1]
  assert [k for k in shared if k.startswith("temporal")] == ["temporal"]
  assert sorted(k for k in separate if k.startswith("temporal")) == [
    "temporal_0",
    "temporal_1",
    "temporal_2",
  ]


def test_one_timestep_for_the_batch_equals_one_per_example():
  """A sampler's t [1] (its embedding computed once) gives what t [N] gives."""
  module, params = _denoiser_params()
  x = np.random.RandomState(5).randn(7, 2).astype(np.float32)
  once = module.apply({"params": params}, x, jnp.array([3], jnp.int32))
  each = module.apply({"params": params}, x, jnp.full((7,), 3, jnp.int32))
  np.testing.assert_allclose(once, each, rtol=1e-6, atol=1e-6)


def test_the_table_of_timesteps_gives_the_per_example_time_path():
  """A batch larger than T gathers the time path from its table of T rows: same numbers."""
  module, params = _denoiser_params()
  table = TemporalMLP(width=module.width, num_layers=module.num_layers, num_timesteps=4)
  x = np.random.RandomState(5).randn(9, 2).astype(np.float32)
  t = jnp.array([3, 0, 1, 3, 2, 2, 0, 1, 3], jnp.int32)
  np.testing.assert_allclose(
    table.apply({"params": params}, x, t),
    module.apply({"params": params}, x, t),
    rtol=1e-6,
    atol=1e-6,
  )


# --- Reverse steps --------------------------------------------------------------------------


def _numpy_reverse_step(eps, x_t, alpha_bar, alpha_bar_prev, z, sampler, variance):
  x0 = (x_t - np.sqrt(1 - alpha_bar) * eps) / np.sqrt(alpha_bar)
  if sampler == "ddim":  # Song et al. 2021, eq. 12 with sigma = 0.
    return np.sqrt(alpha_bar_prev) * x0 + np.sqrt(1 - alpha_bar_prev) * eps
  mean, posterior_variance = _bayes_posterior(x0, x_t, alpha_bar, alpha_bar_prev)
  var = 1 - alpha_bar / alpha_bar_prev if variance == "large" else posterior_variance
  return mean + np.sqrt(var) * z


@pytest.mark.parametrize(
  "sampler, variance", [("ddpm", "large"), ("ddpm", "small"), ("ddim", "large")]
)
def test_one_reverse_step_of_a_fixed_network_matches_numpy(sampler, variance):
  module, params = _denoiser_params()
  alpha_bars = diffusion.make_schedule(_config().model.diffusion).alpha_bars
  rng = np.random.RandomState(1)
  x_t, z = rng.randn(6, 2).astype(np.float32), rng.randn(6, 2).astype(np.float32)
  t = np.full(6, 7)
  eps = module.apply({"params": params}, x_t, jnp.asarray(t, jnp.int32))
  np.testing.assert_allclose(
    eps, numpy_denoiser(ref.to_float64(params), x_t, t, 2, True), rtol=1e-4, atol=1e-5
  )
  got, _ = diffusion.reverse_step(
    eps, x_t, alpha_bars[7], alpha_bars[4], z, sampler=sampler, variance=variance, clip=False
  )
  want = _numpy_reverse_step(
    numpy_denoiser(ref.to_float64(params), x_t, t, 2, True),
    x_t.astype(np.float64),
    alpha_bars[7],
    alpha_bars[4],
    z.astype(np.float64),
    sampler,
    variance,
  )
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_the_compiled_sampler_runs_the_numpy_chain_and_keeps_the_last_predictions(sampler):
  """4 of 10 timesteps (9, 6, 3, 0), the scan's noise keys, and the kept x0 predictions."""
  module, params = _denoiser_params()
  schedule = diffusion.make_schedule(_config().model.diffusion)
  x_start = np.random.RandomState(2).randn(5, 2).astype(np.float32)
  key = jax.random.PRNGKey(7)
  got, kept = diffusion.sample(
    lambda x, t: module.apply({"params": params}, x, t),
    schedule,
    x_start,
    key,
    num_steps=4,
    sampler=sampler,
    variance="large",
    keep_last=2,
  )
  np.testing.assert_array_equal(diffusion.sampling_timesteps(10, 4), [0, 3, 6, 9])
  x, p64, predictions = x_start.astype(np.float64), ref.to_float64(params), []
  timesteps = [9, 6, 3, 0]
  for j, t in enumerate(timesteps):
    alpha_bar = schedule.alpha_bars[t]
    alpha_bar_prev = schedule.alpha_bars[timesteps[j + 1]] if j < 3 else 1.0
    eps = numpy_denoiser(p64, x, np.full(5, t), 2, True)
    predictions.append((x - np.sqrt(1 - alpha_bar) * eps) / np.sqrt(alpha_bar))
    z = np.asarray(jax.random.normal(jax.random.fold_in(key, j), x.shape), np.float64)
    x = _numpy_reverse_step(
      eps, x, alpha_bar, alpha_bar_prev, z if j < 3 else 0 * z, sampler, "large"
    )
  np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(kept, np.stack(predictions[-2:]), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(kept[-1], got, atol=1e-5)  # The last step lands on its x0.


# --- The samplers on a Gaussian with a known optimal denoiser ------------------------------

MEAN, STD = 2.0, 0.5
HO_BETAS = (1e-4, 0.02)


def optimal_eps(alpha_bars):
  """E[eps | x_t] for x0 ~ N(MEAN, STD^2): x_t = sqrt(a) x0 + sqrt(1 - a) eps is jointly Gaussian
  with eps, Cov(eps, x_t) = sqrt(1 - a), Var(x_t) = a STD^2 + 1 - a, so
  E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) MEAN) / (a STD^2 + 1 - a)."""
  alpha_bars = jnp.asarray(alpha_bars, jnp.float32)

  def eps_fn(x, t):
    a = alpha_bars[t][:, None]
    return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * MEAN) / (a * STD**2 + 1 - a)

  return eps_fn


# Ancestral sampling with fewer steps than T is not exact: its fixed variances are the two
# extremes (Ho et al. 2020, section 3.2), "large" above the true reverse variance and "small"
# below it (the next test), so it runs all T here; DDIM (deterministic) runs fewer too.
# Aithal et al.'s schedule (betas 0.001 .. 0.2) ends at abar ~ 4e-44, subnormal in float32:
# computed on the device, 1 / sqrt(abar) was inf and every sample NaN.
AITHAL_BETAS = (0.001, 0.2)


@pytest.mark.parametrize(
  "sampler, variance, num_steps, betas",
  [
    ("ddpm", "large", 1000, HO_BETAS),
    ("ddpm", "small", 1000, HO_BETAS),
    ("ddim", "large", 1000, HO_BETAS),
    ("ddim", "large", 250, HO_BETAS),
    ("ddpm", "large", 1000, AITHAL_BETAS),
  ],
)
def test_samplers_with_the_optimal_denoiser_reproduce_a_gaussian(
  sampler, variance, num_steps, betas
):
  num = 20_000
  x = _optimal_samples(sampler, variance, num_steps, num, betas)
  assert abs(x.mean() - MEAN) < 4 * STD / np.sqrt(num), x.mean()
  assert abs(x.var() - STD**2) < 4 * STD**2 * np.sqrt(2 / num), x.var()


def test_fewer_ancestral_steps_bracket_the_variance_between_large_and_small():
  large = _optimal_samples("ddpm", "large", 100, 20_000).var()
  small = _optimal_samples("ddpm", "small", 100, 20_000).var()
  assert large > STD**2 + 0.005 and small < STD**2 - 0.005, (large, small)


def _optimal_samples(sampler, variance, num_steps, num, betas=None):
  """`num` 1-D samples `[num]` float64 of the optimal denoiser, T = 1000 and linear `betas`
  (Ho et al.'s by default)."""
  config = _config(num_timesteps=1000)
  betas = betas or HO_BETAS
  config.model.diffusion.beta_start, config.model.diffusion.beta_end = betas
  schedule = diffusion.make_schedule(config.model.diffusion)
  x, _ = jax.jit(
    lambda x, key: diffusion.sample(
      optimal_eps(schedule.alpha_bars),
      schedule,
      x,
      key,
      num_steps=num_steps,
      sampler=sampler,
      variance=variance,
    )
  )(jax.random.normal(jax.random.PRNGKey(0), (num, 1)), jax.random.PRNGKey(1))
  return np.asarray(x, np.float64)[:, 0]


# --- Parallel, the config rules, and a run ------------------------------------------------


def test_pmap_over_8_devices_matches_one_device_and_shard_map():
  config = _config(width=8)
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-2
  config.train.batch_size = 16
  batches = helpers.random_point_batches(3, 16)
  state_1, metrics_1 = helpers.run_steps(config, batches, helpers.pmap_on(1))
  state_8, metrics_8 = helpers.run_steps(config, batches, helpers.pmap_on(8))
  assert helpers.max_abs_difference(state_1.params, state_8.params) < 2e-5
  assert helpers.max_abs_difference(state_1.ema_params, state_8.ema_params) < 2e-5
  assert helpers.max_abs_difference(state_1.params, state_1.ema_params) > 1e-3  # A real EMA.
  for m1, m8 in zip(metrics_1, metrics_8):
    np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
  state_mesh, _ = helpers.run_steps(config, batches, helpers.shard_map_on(8))
  assert helpers.max_abs_difference(state_8, state_mesh) < 1e-6  # The other parallel mode.


def test_generate_samples_with_the_ema_weights():
  config = _config(width=8)
  family = get_family(config, (2,))
  state = family.init(jax.random.PRNGKey(0))
  _, other = _denoiser_params(width=8)
  state = state.replace(ema_params=other)
  key = jax.random.PRNGKey(3)
  got = family.generate(state, key, 16)
  start_key, sample_key = jax.random.split(key)
  want, _ = diffusion.sample(
    lambda x, t: state.apply_fn({"params": other}, x, t),
    diffusion.make_schedule(config.model.diffusion),
    jax.random.normal(start_key, (16, 2)),
    sample_key,
    num_steps=10,
    sampler="ddpm",
    variance="large",
  )
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_sampler_keeps_the_trajectory_without_changing_the_samples():
  config = _config(width=8)
  family = get_family(config, (2,))
  state = family.init(jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(3)
  sampler = diffusion.make_sampler(config.model, (2,))
  samples, kept = sampler(state, key, 16, 3)
  # The same noise and steps; the scan split in two compiles differently (last-bit changes).
  np.testing.assert_allclose(samples, family.generate(state, key, 16), rtol=1e-5, atol=1e-5)
  assert kept.shape == (3, 16, 2)
  np.testing.assert_allclose(kept[-1], samples, atol=1e-5)  # The last step lands on its x0.


@pytest.mark.parametrize(
  "key, value, message",
  [
    ("sampling_steps", 11, "sampling_steps"),
    ("beta_start", 0.5, "beta_start"),
    ("clip_denoised", True, "clip_denoised"),
  ],
)
def test_settings_that_cannot_work_together_are_refused(key, value, message):
  config = _config()
  config.model.diffusion[key] = value
  with pytest.raises(ConfigError, match=message):
    get_family(config, (2,))


def test_a_resumed_run_equals_an_uninterrupted_one_bitwise_ema_included(tmp_path):
  def run(num_steps, workdir):
    config = _config(width=8)
    config.optimizer.name = "adam"
    config.train.num_steps = num_steps
    config.train.log_every = 1
    config.train.eval_every = 0
    config.train.eval_batch_size = 5_000  # The end's evaluation: 25,000 test points.
    config.train.sample_every = 0
    config.checkpoint.save_every = 3
    config.checkpoint.keep_best = 0
    config.dataset.data_dir = str(tmp_path / "tfds")
    return jax.device_get(training.train_and_evaluate(config, str(workdir))["state"])

  os.makedirs(tmp_path / "tfds")
  run(3, tmp_path / "resumed")
  resumed, reference = run(6, tmp_path / "resumed"), run(6, tmp_path / "reference")
  assert int(resumed.step) == 6
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(reference)):
    assert np.array_equal(a, b)
  assert helpers.max_abs_difference(resumed.params, resumed.ema_params) > 1e-4


def test_ddpm_ring8_trains_through_experiments_train(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--config",
      "experiments/configs/ddpm_ring8.py",
      "--workdir",
      str(tmp_path / "run"),
      "--config.train.num_steps=20",
      "--config.train.batch_size=64",
      "--config.train.log_every=10",
      "--config.train.num_samples=16",
      "--config.model.diffusion.sampling_steps=10",
    ],
    cwd=REPO,
    env=dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "tfds")),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    lines = f.read().splitlines()
  assert len(lines) >= 3 and all("loss" in line for line in lines)
