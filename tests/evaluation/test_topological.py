"""Topological precision (Kim et al. 2023) against numpy float64 and on sets with known overlap."""

import jax
import numpy as np

from aigc_jax.evaluation import topological


def test_cosine_kde_matches_numpy_float64():
  rng = np.random.default_rng(0)
  data, queries = rng.normal(size=(300, 3)), rng.normal(size=(50, 3))
  weights = rng.integers(0, 3, 300).astype(np.float64)
  h = 0.8
  dist = np.linalg.norm(queries[:, None] - data[None], axis=-1)
  expected = (np.where(dist <= h, np.cos(np.pi / 2 * dist / h), 0.0) * weights).sum(
    1
  ) / weights.sum()
  got = np.asarray(topological.cosine_kde(queries, data, weights, h, chunk_size=64))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_projection_is_fixed_and_only_above_32_dimensions():
  rng = np.random.default_rng(1)
  small = rng.normal(size=(5, 32)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(topological.random_projection(small)), small)
  big = rng.normal(size=(5, 128)).astype(np.float32)
  a, b = topological.random_projection(big), topological.random_projection(big[:3])
  assert a.shape == (5, 32)
  np.testing.assert_allclose(np.asarray(a)[:3], np.asarray(b), rtol=1e-6)


def test_rate_is_low_on_the_same_distribution_and_one_far_away():
  rng = np.random.default_rng(2)
  real = rng.normal(size=(1_500, 8)).astype(np.float32)
  key = jax.random.PRNGKey(0)
  support = topological.topological_support(real, key)
  same, _ = topological.topological_hallucination_rate(
    support, rng.normal(size=(1_000, 8)).astype(np.float32), jax.random.PRNGKey(1)
  )
  # Not 0: the sup-norm band trims the real support to its core (the estimator's own floor).
  assert float(same.rate) < 0.5
  far = rng.normal(size=(1_000, 8)).astype(np.float32) + 50.0
  rate, flags = topological.topological_hallucination_rate(support, far, jax.random.PRNGKey(1))
  assert float(rate.rate) == 1.0 and int(rate.n) == int(flags.sum()) > 100
  # Half far away: every significant far sample is flagged, and the rate rises.
  mixed = np.concatenate([rng.normal(size=(500, 8)), rng.normal(size=(500, 8)) + 50.0])
  fake = topological.topological_support(mixed.astype(np.float32), jax.random.PRNGKey(1))
  rate, flags = topological.topological_hallucination_rate(
    support, mixed.astype(np.float32), jax.random.PRNGKey(1)
  )
  np.testing.assert_array_equal(np.asarray(flags)[500:], np.asarray(fake.significant)[500:])
  assert float(rate.rate) > float(same.rate) + 0.2
