"""pmap over 8 devices == one device == shard_map, for every family; a step run alone (no
pmap) == one device."""

import jax
import numpy as np
import pytest

from aigc_jax.training import noise, parallel
from aigc_jax.training.family import get_family
from experiments.configs import base
from tests.training import helpers

NUM_STEPS = 3
GLOBAL_BATCH = 16


def _config(family, body):
  config = helpers.tiny_config(family, body)
  if family == "gan":
    # Adam turns float noise in the exactly-zero gradients of biases feeding a BatchNorm into
    # moves of about the learning rate; plain SGD compares every parameter honestly.
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.05
  return config


@pytest.mark.parametrize(
  "family,body", [("ae", "mlp"), ("vae", "mlp"), ("vae", "conv"), ("gan", "conv")]
)
def test_pmap_over_8_devices_matches_one_device(family, body):
  assert jax.local_device_count() == 8, "tests/conftest.py should force 8 CPU devices"
  config = _config(family, body)
  batches = helpers.random_batches(NUM_STEPS, GLOBAL_BATCH)
  _assert_8_devices_match_1(config, batches)


def _assert_8_devices_match_1(config, batches):
  """Whole states (parameters, BatchNorm and spectral-norm statistics, EMA) and metrics."""
  state_1, metrics_1 = helpers.run_steps(config, batches, helpers.pmap_on(1))
  state_8, metrics_8 = helpers.run_steps(config, batches, helpers.pmap_on(8))
  assert int(state_8.step) == NUM_STEPS
  assert helpers.max_abs_difference(state_1, state_8) < 2e-5
  for m1, m8 in zip(metrics_1, metrics_8):
    for name in m1:
      np.testing.assert_allclose(m1[name], m8[name], rtol=1e-5, atol=1e-5)
  # The parameters did move: equality is not just "nothing happened". Parameters only (the
  # step counters of whole states always differ), and each network's.
  initial = helpers.initial_state(config, batches[0]["image"].shape[1:])
  before, after = helpers.parameters(initial), helpers.parameters(state_8)
  for name in before:
    assert helpers.max_abs_difference(before[name], after[name]) > 1e-3, name


@pytest.mark.parametrize("family,body", [("vae", "mlp"), ("gan", "conv")])
def test_shard_map_matches_pmap(family, body):
  config = _config(family, body)
  batches = helpers.random_batches(NUM_STEPS, GLOBAL_BATCH)
  state_pmap, metrics_pmap = helpers.run_steps(config, batches, helpers.pmap_on(8))
  state_mesh, metrics_mesh = helpers.run_steps(config, batches, helpers.shard_map_on(8))
  assert helpers.max_abs_difference(state_pmap, state_mesh) < 1e-6
  for mp, mm in zip(metrics_pmap, metrics_mesh):
    for name in mp:
      np.testing.assert_allclose(mp[name], mm[name], rtol=1e-6, atol=1e-6)


def test_shard_map_matches_pmap_with_a_generator_ema():
  """The EMA starts as the generator's own parameters; each must get buffers of its own
  before the (donating) step: an alias crashed jit + shard_map with a segmentation fault."""
  config = _gan_variant("hinge_spectral_norm_ema")
  batches = helpers.random_batches(NUM_STEPS, GLOBAL_BATCH, shape=(8, 8, 1))
  state_pmap, _ = helpers.run_steps(config, batches, helpers.pmap_on(8))
  state_mesh, _ = helpers.run_steps(config, batches, helpers.shard_map_on(8))
  assert helpers.max_abs_difference(state_pmap, state_mesh) < 1e-6
  assert helpers.max_abs_difference(state_mesh.generator_ema, state_mesh.generator.params) > 1e-4


VARIANTS = {  # name: (family, body, model overrides, sample shape)
  "kl_warmup": ("vae", "mlp", dict(kl_warmup_steps=2, kl_warmup_start=0.1), (28, 28, 1)),
  "denoising_ae": (
    "ae",
    "mlp",
    dict(corruption="salt_and_pepper", corruption_level=0.3),
    (28, 28, 1),
  ),
  "conditional_conv_vae": ("vae", "conv", dict(conditioning="concat"), (28, 28, 1)),
  "points_vae": ("vae", "mlp", dict(likelihood="gaussian", output_range="unbounded"), (2,)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_on_8_devices_match_one_device(variant):
  family, body, overrides, shape = VARIANTS[variant]
  config = _config(family, body)
  config.model.update(overrides)
  _assert_8_devices_match_1(config, helpers.random_batches(NUM_STEPS, GLOBAL_BATCH, shape=shape))


def _gan_variant(name):
  """A tiny config of each GAN variant (several per config, to keep the compiles few)."""
  config = _config("gan", "conv")
  gan = config.model.gan
  if name == "hinge_spectral_norm_ema":
    config.model.encoder.norm = "none"
    gan.loss, gan.spectral_norm, gan.ema_decay = "hinge", True, 0.9
  elif name == "wgan_gp_2_steps_diff_augment":
    config.model.encoder.norm = "none"
    gan.loss, gan.regularizer, gan.discriminator_steps = "wasserstein", "gradient_penalty", 2
    gan.diff_augment = "color,translation,cutout"
  elif name == "r1_concat":
    config.model.encoder.norm = "none"
    gan.regularizer, config.model.conditioning = "r1", "concat"
  elif name == "projection_spectral_norm":
    config.model.conditioning, gan.spectral_norm = "projection", True
  elif name == "pacgan_points":
    config.model.latent_dim = 2
    config.model.decoder = base.body(
      "mlp", (8, 8), "relu", norm="batch", bias_before_norm=False, kernel_init="normal_0.02"
    )
    config.model.encoder = base.body("maxout", (8, 8), "maxout", pieces=3)
    gan.pack_size, gan.generator_output = 2, "linear"
  return config


@pytest.mark.parametrize(
  "name",
  [
    "hinge_spectral_norm_ema",
    "wgan_gp_2_steps_diff_augment",
    "r1_concat",
    "projection_spectral_norm",
    "pacgan_points",
  ],
)
def test_gan_variants_on_8_devices_match_one_device(name):
  config = _gan_variant(name)
  if name == "pacgan_points":
    batches = helpers.random_point_batches(NUM_STEPS, GLOBAL_BATCH)
  else:
    batches = helpers.random_batches(NUM_STEPS, GLOBAL_BATCH, shape=(8, 8, 1))
  _assert_8_devices_match_1(config, batches)


@pytest.mark.parametrize("on", [helpers.pmap_on, helpers.shard_map_on], ids=["pmap", "shard_map"])
def test_flag_count_sums_over_every_device(on):
  """The stop agreement of multi-process runs: each device's flag counted once."""
  parallel = on(8)
  assert int(jax.device_get(parallel.count_flags(True))) == 8
  assert int(jax.device_get(parallel.count_flags(False))) == 0


def test_a_step_run_alone_sees_one_device_of_a_one_device_axis():
  """`on_one_device`: collectives over the device axis are identities and `axis_index` is 0."""

  def step(state, batch, key):
    total = jax.lax.psum(batch["x"].sum(), noise.BATCH_AXIS)
    return {
      "state": jax.lax.pmean(state, noise.BATCH_AXIS),
      "total": total,
      "device": jax.lax.axis_index(noise.BATCH_AXIS),
      "key": key,
    }

  batch = {"x": np.arange(6, dtype=np.float32).reshape(3, 2)}
  key = jax.random.PRNGKey(3)
  out = jax.jit(parallel.on_one_device(step))(np.float32(2.5), batch, key)
  assert float(out["state"]) == 2.5 and float(out["total"]) == 15.0
  assert int(out["device"]) == 0 and np.shape(out["total"]) == ()
  np.testing.assert_array_equal(out["key"], key)


@pytest.mark.parametrize("family,body", [("vae", "mlp"), ("gan", "conv")])
def test_a_train_step_run_alone_equals_a_one_device_pmap(family, body):
  """The multi-seed trainer's step is the training loop's on one device (up to float
  rounding: XLA fuses a pmap and a jit of a vmap differently)."""
  config = _config(family, body)
  batches = helpers.random_batches(NUM_STEPS, GLOBAL_BATCH)
  expected, expected_metrics = helpers.run_steps(config, batches, helpers.pmap_on(1))
  state = helpers.initial_state(config)
  step = jax.jit(parallel.on_one_device(get_family(config, (28, 28, 1)).train_step))
  for batch, metrics in zip(batches, expected_metrics):
    state, got = step(state, batch, jax.random.PRNGKey(1))
    assert set(got) == set(metrics)
    for name in metrics:
      np.testing.assert_allclose(got[name], metrics[name], rtol=1e-5, atol=1e-6)
  assert int(state.step) == NUM_STEPS
  assert helpers.max_abs_difference(jax.device_get(state), expected) < 2e-5
  before, after = helpers.parameters(helpers.initial_state(config)), helpers.parameters(state)
  for name in before:  # It trained: equal is not "nothing happened".
    assert helpers.max_abs_difference(before[name], after[name]) > 1e-3, name
