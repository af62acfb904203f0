"""Tests of the PacGAN 2-D metrics: modes captured, high-quality fraction, reverse KL."""

import jax
import numpy as np
import pytest

from aigc_jax.data import gaussian_mixtures as gm
from aigc_jax.evaluation import mode_collapse as mc


def test_nearest_mode_matches_numpy_float64_with_anisotropic_stds():
  rng = np.random.default_rng(0)
  means = rng.normal(0, 3, (7, 2))
  stds = rng.uniform(0.05, 0.5, (7, 2))
  samples = rng.normal(0, 3, (500, 2))
  squared = (((samples[:, None] - means[None]) / stds[None]) ** 2).sum(-1)
  modes, distances = mc.nearest_mode(samples, means, stds)
  np.testing.assert_array_equal(modes, squared.argmin(1))
  np.testing.assert_allclose(distances, np.sqrt(squared.min(1)), rtol=1e-5)
  # [K] isotropic and scalar stds mean the same as the full [K, D] array.
  iso = np.full(7, 0.2)
  np.testing.assert_allclose(
    mc.nearest_mode(samples, means, iso)[1],
    mc.nearest_mode(samples, means, np.full((7, 2), 0.2))[1],
  )
  np.testing.assert_allclose(
    mc.nearest_mode(samples, means, 0.2)[1], mc.nearest_mode(samples, means, iso)[1]
  )


def test_metrics_of_a_hand_made_sample_set():
  means, std = gm.RING8.means, 0.01
  samples = np.stack(
    [
      means[0],
      means[0] + [0.02, 0.0],
      means[0] - [0.0, 0.029],  # Mode 0: 3 high quality.
      means[1] + [0.0, 0.02],  # Mode 1: 1 high quality.
      means[2] + [0.04, 0.0],  # 4 std off: not HQ.
      np.array([0.0, 0.0]),  # Nowhere near a mode.
    ]
  )
  metrics = mc.mode_collapse_metrics(samples, means, std)
  np.testing.assert_array_equal(metrics.counts, [3, 1, 0, 0, 0, 0, 0, 0])
  assert int(metrics.modes_captured) == 2
  assert float(metrics.high_quality_fraction) == pytest.approx(4 / 6)
  # KL((3/4, 1/4, 0, ...) || uniform over 8) = 3/4 log(8 * 3/4) + 1/4 log(8 * 1/4).
  expected = 0.75 * np.log(6.0) + 0.25 * np.log(2.0)
  assert float(metrics.reverse_kl) == pytest.approx(expected, rel=1e-6)
  assert metrics.as_dict()["modes_captured"] == 2
  # Jittable, same numbers.
  jitted = jax.jit(mc.mode_collapse_metrics)(samples, means, std)
  assert float(jitted.reverse_kl) == pytest.approx(expected, rel=1e-6)


def test_high_quality_is_strictly_below_three_standard_deviations():
  means = np.array([[0.0, 0.0], [10.0, 0.0]])
  samples = np.array([[1.5, 0.0], [0.0, -1.4999], [11.5, 0.0]])  # std 0.5: 3, 2.9998, 3.
  metrics = mc.mode_collapse_metrics(samples, means, 0.5)
  np.testing.assert_array_equal(metrics.counts, [1, 0])


def test_reverse_kl_edges():
  assert float(mc.reverse_kl_to_uniform([5, 5, 5, 5])) == pytest.approx(0.0, abs=1e-7)
  assert float(mc.reverse_kl_to_uniform([0, 9, 0, 0])) == pytest.approx(np.log(4), rel=1e-6)
  assert np.isnan(float(mc.reverse_kl_to_uniform([0, 0, 0])))  # No high-quality sample.
  counts = np.array([4, 0, 1, 3, 2])
  p = counts / counts.sum()
  expected = np.sum(p[p > 0] * np.log(p[p > 0] * 5))  # Empty bins contribute nothing.
  assert float(mc.reverse_kl_to_uniform(counts)) == pytest.approx(expected, rel=1e-6)
  metrics = mc.mode_collapse_metrics(np.array([[50.0, 50.0]]), gm.GRID25.means, 0.05)
  assert int(metrics.modes_captured) == 0 and float(metrics.high_quality_fraction) == 0.0
  assert np.isnan(float(metrics.reverse_kl))


@pytest.mark.parametrize("mixture", [gm.RING8, gm.GRID25], ids=lambda m: m.name)
def test_true_mixture_samples_score_as_the_floor(mixture):
  points, _ = gm.split_points(mixture.name, "test")
  points = points[:2500]  # PacGAN evaluates 2,500 samples.
  metrics = mc.mode_collapse_metrics(points, mixture.means, mixture.stds)
  assert int(metrics.modes_captured) == mixture.num_modes
  floor = gm.TRUE_MIXTURE_VALID_FRACTION
  assert abs(float(metrics.high_quality_fraction) - floor) < 5 * np.sqrt(floor * (1 - floor) / 2500)
  assert float(metrics.reverse_kl) < 0.02  # Only sampling noise: about (K - 1) / (2 n).
  # The metric's high-quality flags are the dataset's own SupportCheck.
  _, distances = mc.nearest_mode(points, mixture.means, mixture.stds)
  np.testing.assert_array_equal(np.asarray(distances) < 3, mixture.support_check(points))
  # A collapsed generator: every sample on mode 0.
  collapsed = mc.mode_collapse_metrics(
    np.repeat(mixture.means[:1], 100, axis=0), mixture.means, mixture.std
  )
  assert int(collapsed.modes_captured) == 1
  assert float(collapsed.reverse_kl) == pytest.approx(np.log(mixture.num_modes), rel=1e-6)
