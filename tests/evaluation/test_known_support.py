"""The datasets' validity checks through the evaluation layer's SupportCheck interface."""

import numpy as np
import pytest

import aigc_jax.data as data
from aigc_jax.data import gaussian_mixtures as gm
from aigc_jax.data import simple_shapes as ss
from aigc_jax.evaluation import hallucination


@pytest.mark.parametrize("name", ["gaussian_ring8", "gaussian_grid25"])
def test_mixture_rate_on_real_points_is_the_chi2_floor(name):
  spec = data.get_dataset_spec(name)
  points, _ = gm.split_points(spec.mixture.name, "test")
  estimate, flags = hallucination.support_hallucination_rate(points, spec.support_check)
  floor = 1 - gm.TRUE_MIXTURE_VALID_FRACTION  # exp(-4.5) = 0.0111.
  assert abs(float(estimate.rate) - floor) < 5 * np.sqrt(floor * (1 - floor) / len(points))
  assert float(estimate.ci_low) <= floor <= float(estimate.ci_high)
  shifted = points + np.float32(10 * spec.mixture.std)  # Every point 14 std off its mode.
  assert float(hallucination.support_hallucination_rate(shifted, spec.support_check)[0].rate) == 1
  assert flags.dtype == bool and flags.shape == (len(points),)


def test_shapes_rate_is_zero_on_real_images_and_counts_planted_ones():
  spec = data.get_dataset_spec("simple_shapes")
  _, positions = ss.split_examples()["test"]
  images = ss.render(positions).astype(np.float32) / 255  # As the pipeline yields them.
  estimate, _ = hallucination.support_hallucination_rate(images, spec.support_check)
  assert int(estimate.count) == 0 and int(estimate.n) == 1000
  # A stray pixel in gutter column 10 of every fourth image, where no shape is near it.
  nothing_near = ~np.any(images[:, 3:8, 8:13, 0] > 0, axis=(1, 2))
  expected = nothing_near & (np.arange(1000) % 4 == 0)
  broken = images.copy()
  broken[expected, 5, 10] = 1.0
  estimate, flags = hallucination.support_hallucination_rate(broken, spec.support_check)
  np.testing.assert_array_equal(flags, expected)
  assert 200 < int(estimate.count) == expected.sum() <= 250
