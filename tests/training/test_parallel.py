"""pmap over 8 devices == one device == shard_map, for every family."""
import jax
import numpy as np
import pytest

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


@pytest.mark.parametrize("family,body", [("ae", "mlp"), ("vae", "mlp"), ("vae", "conv"),
                                         ("gan", "conv")])
def test_pmap_over_8_devices_matches_one_device(family, body):
  assert jax.local_device_count() == 8, "tests/conftest.py should force 8 CPU devices"
  config = _config(family, body)
  batches = helpers.random_batches(NUM_STEPS, GLOBAL_BATCH)
  state_1, metrics_1 = helpers.run_steps(config, batches, helpers.pmap_on(1))
  state_8, metrics_8 = helpers.run_steps(config, batches, helpers.pmap_on(8))
  assert int(state_8.step) == NUM_STEPS
  assert helpers.max_abs_difference(state_1, state_8) < 2e-5
  for m1, m8 in zip(metrics_1, metrics_8):
    for name in m1:
      np.testing.assert_allclose(m1[name], m8[name], rtol=1e-5, atol=1e-5)
  # The parameters did move: equality is not just "nothing happened". Parameters only: the
  # step counters alone would always differ.
  assert helpers.max_abs_difference(helpers.parameters(helpers.initial_state(config)),
                                    helpers.parameters(state_8)) > 1e-3


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
