"""Hallucination rates recover planted hallucinations; the Wilson interval against known values."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.evaluation import distribution
from aigc_jax.evaluation import hallucination

PLANTED_FRACTION = 0.2


def _planted_mask(n, seed):
  """Exactly PLANTED_FRACTION of n positions, scattered."""
  mask = np.zeros(n, bool)
  mask[np.random.default_rng(seed).permutation(n)[: round(PLANTED_FRACTION * n)]] = True
  return mask


def _assert_recovers(estimate, flags, planted):
  estimate = estimate.as_dict()
  assert estimate["n"] == len(planted)
  assert estimate["ci_low"] <= PLANTED_FRACTION <= estimate["ci_high"], estimate
  assert estimate["count"] == int(np.sum(flags))
  assert estimate["rate"] == np.float32(estimate["count"] / estimate["n"])
  assert np.all(np.asarray(flags)[planted]), "a planted hallucination was missed"


# ---- Wilson interval. ----------------------------------------------------------------------


def test_wilson_interval_matches_newcombe_1998_table():
  # Newcombe (1998), Stat. Med. 17:857, Table II, method 3 (score interval without
  # continuity correction), 95%.
  table = {
    (81, 263): (0.2553, 0.3662),
    (15, 148): (0.0624, 0.1605),
    (0, 20): (0.0, 0.1611),
    (1, 29): (0.0061, 0.1718),
  }
  for (count, n), (low, high) in table.items():
    ours = [float(v) for v in hallucination.wilson_interval(count, n)]
    assert abs(ours[0] - low) < 5e-5 and abs(ours[1] - high) < 5e-5, (count, n, ours)


def test_wilson_interval_closed_form_and_edges():
  z = hallucination.Z_95
  counts, n = np.arange(0, 41), 40
  low, high = (np.asarray(v) for v in hallucination.wilson_interval(counts, n))
  p = counts / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
  np.testing.assert_allclose(low, np.clip(centre - half, 0, 1), atol=1e-6)
  np.testing.assert_allclose(high, centre + half, atol=1e-6)
  # count = 0 and count = n: the bound at the edge is exact, the other z^2 / (n + z^2) away.
  assert low[0] == 0.0 and abs(high[0] - z * z / (n + z * z)) < 1e-6
  assert high[-1] == 1.0 and abs(low[-1] - n / (n + z * z)) < 1e-6
  assert np.all(low <= p) and np.all(p <= high)
  # A smaller z gives a narrower interval; n = 0 says nothing.
  narrow_low, narrow_high = hallucination.wilson_interval(10, 40, z=1.0)
  assert low[10] < float(narrow_low) < float(narrow_high) < high[10]
  assert [float(v) for v in hallucination.wilson_interval(0, 0)] == [0.0, 1.0]


def test_rate_estimate_is_frozen_and_jittable():
  flags = jnp.array([True, False, False, False, True])
  estimate = jax.jit(hallucination.rate_from_flags)(flags)
  assert estimate.as_dict()["count"] == 2 and float(estimate.rate) == np.float32(0.4)
  with pytest.raises(dataclasses.FrozenInstanceError):
    estimate.rate = 0.0
  assert np.isnan(float(hallucination.rate_from_flags(jnp.zeros((0,), bool)).rate))


# ---- Planted hallucinations. ---------------------------------------------------------------


def _gaussian_clusters(rng, n, centres):
  labels = rng.integers(len(centres), size=n)
  return (centres[labels] + 0.3 * rng.standard_normal((n, centres.shape[1]))).astype(np.float32)


def test_manifold_hallucination_rate_recovers_planted_off_manifold_points():
  rng = np.random.default_rng(0)
  centres = 4.0 * rng.standard_normal((5, 2))
  real = _gaussian_clusters(rng, 3000, centres)
  fake = _gaussian_clusters(rng, 600, centres)
  planted = _planted_mask(len(fake), seed=1)
  # Far-away noise: a ring of radius 30 to 40 around the data.
  angle = rng.uniform(0, 2 * np.pi, planted.sum())
  radius = rng.uniform(30, 40, planted.sum())
  fake[planted] = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
  estimate, flags = hallucination.manifold_hallucination_rate(real, fake, 3, chunk_size=256)
  print("manifold hallucination:", estimate.as_dict())
  _assert_recovers(estimate, flags, planted)
  # Genuine samples are rarely flagged (only tail samples outside every real k-NN ball).
  assert np.asarray(flags)[~planted].mean() < 0.05
  precision, _ = distribution.precision_recall(real, fake, 3)
  assert int(estimate.count) == round((1 - float(precision)) * len(fake))


def test_support_hallucination_rate_recovers_planted_invalid_samples():
  rng = np.random.default_rng(2)
  # The "data": points in the unit disc; valid iff inside it.
  samples = rng.uniform(-0.7, 0.7, size=(500, 2))
  planted = _planted_mask(len(samples), seed=3)
  samples[planted] *= 3.0 / np.linalg.norm(samples[planted], axis=1, keepdims=True)

  def in_unit_disc(x):
    return np.linalg.norm(x, axis=1) <= 1.0

  estimate, flags = hallucination.support_hallucination_rate(samples, in_unit_disc)
  _assert_recovers(estimate, flags, planted)
  np.testing.assert_array_equal(flags, planted)
  with pytest.raises(ValueError, match="bool"):
    hallucination.support_hallucination_rate(samples, lambda x: np.ones(len(x)))


def _confident_probs(rng, labels, num_classes, confidence=0.9):
  """Rows putting `confidence` on `labels` and the rest spread at random over other classes."""
  rest = rng.dirichlet(np.ones(num_classes - 1), size=len(labels)) * (1 - confidence)
  probs = np.zeros((len(labels), num_classes))
  for i, label in enumerate(labels):
    probs[i, label] = confidence
    probs[i, np.arange(num_classes) != label] = rest[i]
  return probs.astype(np.float32)


def test_reconstruction_class_flip_rate_recovers_planted_flips():
  rng = np.random.default_rng(4)
  labels = rng.integers(10, size=400)
  planted = _planted_mask(len(labels), seed=5)
  recon_classes = np.where(planted, (labels + rng.integers(1, 10, size=len(labels))) % 10, labels)
  probs = _confident_probs(rng, recon_classes, 10, confidence=0.6)
  estimate, flags = hallucination.reconstruction_class_flip_rate(probs, labels)
  _assert_recovers(estimate, flags, planted)
  np.testing.assert_array_equal(flags, planted)
  assert float(estimate.rate) == np.float32(PLANTED_FRACTION)


def test_unrecognisable_rate_recovers_planted_ambiguous_samples():
  rng = np.random.default_rng(6)
  labels = rng.integers(10, size=400)
  planted = _planted_mask(len(labels), seed=7)
  probs = _confident_probs(rng, labels, 10, confidence=0.8)
  # Ambiguous: the best class gets at most 0.45 (two classes near 0.45, or near uniform).
  ambiguous = rng.dirichlet(np.full(10, 5.0), size=planted.sum())
  ambiguous[: len(ambiguous) // 2, :2] += 8.0
  probs[planted] = ambiguous / ambiguous.sum(axis=1, keepdims=True)
  assert probs[planted].max() < 0.5
  estimate, flags = hallucination.unrecognisable_rate(probs)
  _assert_recovers(estimate, flags, planted)
  np.testing.assert_array_equal(flags, planted)
  # The threshold is strict: exactly 0.5 on one class is recognisable.
  half = np.array([[0.5, 0.3, 0.2]], np.float32)
  assert not bool(hallucination.unrecognisable_rate(half)[1][0])
  assert bool(hallucination.unrecognisable_rate(half, threshold=0.6)[1][0])


def test_control_error_rate_recovers_planted_wrong_classes():
  rng = np.random.default_rng(8)
  requested = rng.integers(10, size=400)
  planted = _planted_mask(len(requested), seed=9)
  generated = np.where(
    planted, (requested + rng.integers(1, 10, size=len(requested))) % 10, requested
  )
  probs = _confident_probs(rng, generated, 10, confidence=0.7)
  estimate, flags = jax.jit(hallucination.control_error_rate)(probs, requested)
  _assert_recovers(estimate, flags, planted)
  np.testing.assert_array_equal(flags, planted)
  with pytest.raises(ValueError, match="labels"):
    hallucination.control_error_rate(probs, requested[:-1])
