"""Latent-GMM sampling (Ghosh et al. 2020): the family's encode/decode and the sampler."""

import types

import jax
import numpy as np
import pytest

from aigc_jax import latent_gmm
from aigc_jax.training.family import get_family
from experiments.configs import hallucination_bases


@pytest.mark.parametrize("family_name", ["ae", "vae"])
def test_decode_of_encode_is_what_reconstruct_returns(family_name):
  config = hallucination_bases.get_config(f"gaussian_ring8,{family_name}")
  family = get_family(config, (2,))
  state = family.init(jax.random.PRNGKey(0))
  points = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
  codes = family.encode(state, points)
  assert codes.shape == (64, config.model.latent_dim)
  np.testing.assert_allclose(
    family.decode(state, codes),
    family.reconstruct(state, points, jax.random.PRNGKey(1)),
    rtol=1e-6,
    atol=1e-6,
  )


def _identity_family():
  """A stand-in whose codes are its inputs: the samples are then the GMM's own draws."""
  return types.SimpleNamespace(
    encode=lambda state, x: x, decode=lambda state, z: z, conditional=False
  )


def _two_clusters(num, rng):
  """Points at (-5, 0) with weight 0.25 and at (5, 0) with weight 0.75, std 0.1."""
  right = rng.random(num) < 0.75
  centres = np.where(right[:, None], [5.0, 0.0], [-5.0, 0.0])
  return (centres + 0.1 * rng.normal(size=(num, 2))).astype(np.float32)


def test_samples_follow_the_mixture_of_the_training_codes():
  train = _two_clusters(4000, np.random.default_rng(0))
  samples = latent_gmm.generate(_identity_family(), None, train, 4000, num_components=2)
  right = samples[:, 0] > 0
  # Binomial standard error of the weight: sqrt(0.75 * 0.25 / 4000) = 0.007.
  assert abs(right.mean() - 0.75) < 0.03
  for side, centre in ((right, 5.0), (~right, -5.0)):
    np.testing.assert_allclose(samples[side].mean(0), [centre, 0.0], atol=0.02)
    np.testing.assert_allclose(samples[side].std(0), [0.1, 0.1], rtol=0.1)
  # Shuffled, not grouped by component: both halves hold both clusters at the weight.
  assert abs(right[:2000].mean() - right[2000:].mean()) < 0.06


def test_same_seed_same_samples_other_seed_other_samples():
  train = _two_clusters(500, np.random.default_rng(1))
  family = _identity_family()
  first = latent_gmm.generate(family, None, train, 100, num_components=2, seed=3)
  np.testing.assert_array_equal(
    first, latent_gmm.generate(family, None, train, 100, num_components=2, seed=3)
  )
  assert not np.allclose(
    first, latent_gmm.generate(family, None, train, 100, num_components=2, seed=4)
  )


def test_conditional_or_encoderless_families_are_refused_in_one_line():
  for family in (
    types.SimpleNamespace(encode=None, decode=None, conditional=False),
    types.SimpleNamespace(encode=lambda s, x: x, decode=lambda s, z: z, conditional=True),
  ):
    with pytest.raises(ValueError, match="unconditional family with an encoder") as raised:
      latent_gmm.generate(family, None, np.zeros((20, 2), np.float32), 10)
    assert "\n" not in str(raised.value)
  with pytest.raises(ValueError, match="at least that many codes"):
    latent_gmm.fit(np.zeros((5, 2)), num_components=10)
