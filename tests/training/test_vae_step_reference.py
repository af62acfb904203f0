"""One AE / VAE train step recomputed independently: numpy float64, the documented noise, SGD.

The family's step (pmap over 4 devices, float32) must give the loss, each of its terms and the
updated parameters that a numpy forward pass and central finite differences give, with
beta != 1 and both likelihoods. With SGD the update is exactly params - lr * grad.
"""

import numpy as np
import pytest

from tests.training import vae_cases as cases
from tests.training import vae_reference as ref


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_step_matches_numpy_float64(likelihood):
  nll, mean_fn = cases.LIKELIHOODS[likelihood]
  batch = cases.random_batch()
  initial, updated, metrics = cases.one_step(cases.tiny_mlp_config("vae", likelihood), batch)
  x = batch["image"].astype(np.float64)
  eps = ref.step_noise(cases.TRAIN_KEY, 0, range(cases.GLOBAL_BATCH), (cases.LATENT_DIM,))

  def reference_loss(params):
    return ref.vae_terms(params, x, eps, cases.BETA, nll, mean_fn)["loss"]

  expected = ref.vae_terms(ref.to_float64(initial), x, eps, cases.BETA, nll, mean_fn)
  cases.assert_terms_match(metrics, expected)
  assert expected["kl"] > 1e-2 and expected["loss"] > expected["reconstruction_nll"] + 1e-2
  cases.assert_sgd_step_matches(initial, updated, reference_loss)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_ae_step_matches_numpy_float64(likelihood):
  nll, mean_fn = cases.LIKELIHOODS[likelihood]
  batch = cases.random_batch()
  initial, updated, metrics = cases.one_step(cases.tiny_mlp_config("ae", likelihood), batch)
  x = batch["image"].astype(np.float64)

  def reference_loss(params):
    return ref.ae_terms(params, x, x, nll, mean_fn)["loss"]

  cases.assert_terms_match(metrics, ref.ae_terms(ref.to_float64(initial), x, x, nll, mean_fn))
  cases.assert_sgd_step_matches(initial, updated, reference_loss)
