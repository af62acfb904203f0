"""Tiny AE/VAE set-ups shared by the tests that pin the maths of the AE/VAE families: a
4-pixel MLP without BatchNorm, plain SGD, one step on NUM_DEVICES devices."""

import jax
import numpy as np

from aigc_jax.training.family import get_family
from experiments.configs import base
from tests.training import helpers
from tests.training import vae_reference as ref

SHAPE = (2, 2, 1)
LATENT_DIM = 2
GLOBAL_BATCH = 8
NUM_DEVICES = 4
LEARNING_RATE = 0.5
BETA = 2.5
SCALE = 0.5
SEED = 0
TRAIN_KEY = jax.random.PRNGKey(SEED + 1)  # The training key `one_step` gives the step.

LIKELIHOODS = {
  "bernoulli": (ref.bernoulli_nll, ref.bernoulli_mean),
  "gaussian": (ref.gaussian_nll(SCALE), ref.unit_clip),
}


def tiny_mlp_config(family, likelihood="bernoulli"):
  """A 4-pixel MLP AE/VAE (4 -> 5 -> code, code -> 5 -> 4) without BatchNorm, plain SGD."""
  config = helpers.tiny_config(family)
  config.model.latent_dim = LATENT_DIM
  config.model.encoder = base.body("mlp", (5,), "relu")
  config.model.decoder = base.body("mlp", (5,), "relu")
  config.model.likelihood = likelihood
  config.model.likelihood_scale = SCALE
  config.model.beta = BETA
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = LEARNING_RATE
  config.train.batch_size = GLOBAL_BATCH
  return config


def random_batch(shape=SHAPE, low=0.0, high=1.0, seed=3):
  batch = helpers.random_batches(1, GLOBAL_BATCH, shape=shape, seed=seed)[0]
  batch["image"] = (low + (high - low) * batch["image"]).astype(np.float32)
  return batch


def initial_state(family):
  """The family's init state with random biases: flax starts them at 0, which puts an all-zero
  input (a masked example) exactly on a ReLU's kink, where finite differences disagree."""
  state = family.init(jax.random.PRNGKey(SEED))
  keys = iter(jax.random.split(jax.random.PRNGKey(SEED + 2), 100))
  params = jax.tree_util.tree_map_with_path(
    lambda path, p: 0.1 * jax.random.normal(next(keys), p.shape) if path[-1].key == "bias" else p,
    state.params,
  )
  return state.replace(params=params)


def one_step(config, batch, start_step=0, num_devices=NUM_DEVICES):
  """(initial params, params after one train step, its metrics) from `initial_state`
  with its step set to `start_step`; the step's key is TRAIN_KEY."""
  family = get_family(config, batch["image"].shape[1:])
  initial = initial_state(family)
  initial = initial.replace(step=initial.step + start_step)
  parallel = helpers.pmap_on(num_devices)
  step = parallel.compile_train_step(family.train_step)
  state, metrics = step(
    parallel.put_state(initial),
    parallel.put_batch(helpers.device_layout(batch, num_devices)),
    TRAIN_KEY,
  )
  return (
    initial.params,
    jax.device_get(parallel.get_state(state)).params,
    jax.device_get(parallel.first_copy(metrics)),
  )


def assert_terms_match(metrics, expected, rtol=1e-5):
  assert set(metrics) == set(expected), (sorted(metrics), sorted(expected))
  for name, value in expected.items():
    np.testing.assert_allclose(metrics[name], value, rtol=rtol, err_msg=name)


def assert_sgd_step_matches(initial, updated, reference_loss):
  """updated - initial == -lr * (finite-difference gradient of the numpy loss)."""
  grads = ref.numeric_gradient(reference_loss, initial)
  moved = jax.tree.map(
    lambda a, b: np.asarray(b, np.float64) - np.asarray(a, np.float64), initial, updated
  )
  expected = jax.tree.map(lambda g: -LEARNING_RATE * g, grads)
  for (path, got), want in zip(
    jax.tree_util.tree_leaves_with_path(moved), jax.tree.leaves(expected)
  ):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path))
  assert max(np.max(np.abs(g)) for g in jax.tree.leaves(expected)) > 1e-2  # A real move.
