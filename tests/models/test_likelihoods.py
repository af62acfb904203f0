"""Likelihoods and the VAE's KL against closed forms computed independently."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from aigc_jax.models.likelihoods import get_likelihood
from aigc_jax.training.autoencoders import gaussian_kl


def test_bernoulli_nll_matches_numpy():
  rng = np.random.RandomState(0)
  logits = rng.randn(3, 4, 4, 1).astype(np.float32) * 3
  x = rng.rand(3, 4, 4, 1).astype(np.float32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(3, -1).sum(1)
  np.testing.assert_allclose(get_likelihood("bernoulli").nll(logits, x), expected, rtol=1e-5)
  np.testing.assert_allclose(get_likelihood("bernoulli").mean(logits), p, rtol=1e-5)


def test_gaussian_nll_matches_scipy():
  rng = np.random.RandomState(1)
  mean = rng.rand(2, 3, 3, 2).astype(np.float32)
  x = rng.rand(2, 3, 3, 2).astype(np.float32)
  expected = -stats.norm.logpdf(x, mean, 0.1).reshape(2, -1).sum(1)
  np.testing.assert_allclose(get_likelihood("gaussian", 0.1).nll(mean, x), expected, rtol=1e-5)


def test_gaussian_kl_matches_closed_form_and_is_zero_at_the_prior():
  mean = np.array([[0.5, -1.0]], np.float32)
  logvar = np.array([[math.log(2.0), math.log(0.5)]], np.float32)
  # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2) / 2 - 1/2 per dimension.
  expected = sum(
    math.log(1 / math.sqrt(v)) + (v + m * m) / 2 - 0.5 for m, v in [(0.5, 2.0), (-1.0, 0.5)]
  )
  np.testing.assert_allclose(gaussian_kl(mean, logvar), [expected], rtol=1e-6)
  np.testing.assert_allclose(gaussian_kl(np.zeros((1, 3)), np.zeros((1, 3))), [0.0], atol=1e-7)


@pytest.mark.parametrize("name", ["bernoulli", "gaussian"])
def test_flattened_computation_changes_no_bit(name):
  """The likelihoods compute per-pixel terms on `[B, H*W*C]` (vectorised on the CPU); values
  and gradients equal, bit for bit, the same formula on the images' own `[B, H, W, 1]`."""
  likelihood = get_likelihood(name, 0.1)
  per_pixel = {
    "bernoulli": optax.sigmoid_binary_cross_entropy,
    "gaussian": lambda mean, x: (
      0.5 * jnp.square((x - mean) / 0.1) + math.log(0.1) + 0.5 * math.log(2 * math.pi)
    ),
  }[name]
  unflattened = lambda outputs, x: per_pixel(outputs, x).reshape((x.shape[0], -1)).sum(-1)
  rng = np.random.RandomState(2)
  outputs = (rng.randn(16, 28, 28, 1) * 3).astype(np.float32)
  x = rng.rand(16, 28, 28, 1).astype(np.float32)
  value = lambda nll: jax.jit(nll)(outputs, x)
  gradient = lambda nll: jax.jit(jax.grad(lambda o: nll(o, x).sum()))(outputs)
  np.testing.assert_array_equal(value(likelihood.nll), value(unflattened))
  np.testing.assert_array_equal(gradient(likelihood.nll), gradient(unflattened))
  if name == "bernoulli":
    np.testing.assert_array_equal(
      jax.jit(likelihood.mean)(outputs), jax.jit(jax.nn.sigmoid)(outputs)
    )
