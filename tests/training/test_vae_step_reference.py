"""One AE / VAE train step recomputed independently: numpy float64, the documented noise, SGD.

The family's step (pmap over 4 devices, float32) must give the loss, each of its terms and the
updated parameters that a numpy forward pass and central finite differences give, with
beta != 1 and both likelihoods. With SGD the update is exactly params - lr * grad.
"""
import jax
import numpy as np
import pytest

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
TRAIN_KEY = jax.random.PRNGKey(SEED + 1)  # The key `helpers.run_steps` gives the step.

LIKELIHOODS = {"bernoulli": (ref.bernoulli_nll, ref.bernoulli_mean),
               "gaussian": (ref.gaussian_nll(SCALE), ref.unit_clip)}


def tiny_mlp_config(family, likelihood):
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


def run_one_step(config, shape=SHAPE):
  """(initial params, params after one step, step metrics, the batch) on NUM_DEVICES devices."""
  batches = helpers.random_batches(1, GLOBAL_BATCH, shape=shape, seed=3)
  initial = helpers.initial_state(config, shape, seed=SEED)
  state, metrics = helpers.run_steps(config, batches, helpers.pmap_on(NUM_DEVICES), seed=SEED)
  return initial.params, state.params, metrics[0], batches[0]


def assert_sgd_step_matches(initial, updated, reference_loss):
  """updated - initial == -lr * (finite-difference gradient of the numpy loss)."""
  grads = ref.numeric_gradient(reference_loss, initial)
  moved = jax.tree.map(lambda a, b: np.asarray(b, np.float64) - np.asarray(a, np.float64),
                       initial, updated)
  expected = jax.tree.map(lambda g: -LEARNING_RATE * g, grads)
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(moved),
                               jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6,
                               err_msg=jax.tree_util.keystr(path))
  assert max(np.max(np.abs(g)) for g in jax.tree.leaves(expected)) > 1e-2  # A real move.


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_step_matches_numpy_float64(likelihood):
  nll, mean_fn = LIKELIHOODS[likelihood]
  initial, updated, metrics, batch = run_one_step(tiny_mlp_config("vae", likelihood))
  x = batch["image"].astype(np.float64)
  eps = ref.step_noise(TRAIN_KEY, 0, range(GLOBAL_BATCH), (LATENT_DIM,))

  def reference_loss(params):
    return ref.vae_terms(params, x, eps, BETA, nll, mean_fn)["loss"]

  expected = ref.vae_terms(ref.to_float64(initial), x, eps, BETA, nll, mean_fn)
  assert set(metrics) == set(expected)
  for name, value in expected.items():
    np.testing.assert_allclose(metrics[name], value, rtol=1e-5, err_msg=name)
  assert expected["kl"] > 1e-2 and expected["loss"] > expected["reconstruction_nll"] + 1e-2
  assert_sgd_step_matches(initial, updated, reference_loss)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_ae_step_matches_numpy_float64(likelihood):
  nll, mean_fn = LIKELIHOODS[likelihood]
  initial, updated, metrics, batch = run_one_step(tiny_mlp_config("ae", likelihood))
  x = batch["image"].astype(np.float64)

  def reference_loss(params):
    return ref.ae_terms(params, x, x, nll, mean_fn)["loss"]

  expected = ref.ae_terms(ref.to_float64(initial), x, x, nll, mean_fn)
  assert set(metrics) == set(expected)
  for name, value in expected.items():
    np.testing.assert_allclose(metrics[name], value, rtol=1e-5, err_msg=name)
  assert_sgd_step_matches(initial, updated, reference_loss)
