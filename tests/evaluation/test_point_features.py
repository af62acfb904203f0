"""Tests of the identity feature extractor for points."""

import numpy as np
import pytest

from aigc_jax.evaluation import hallucination
from aigc_jax.evaluation.features import IdentityFeatureExtractor


def test_features_are_the_points_in_any_batching():
  points = np.random.default_rng(0).normal(size=(37, 2)).astype(np.float32)
  for batch_size in (1, 8, 256):
    features = IdentityFeatureExtractor(batch_size=batch_size).features(points)
    np.testing.assert_array_equal(features, points)  # Padding cut off, values untouched.
  assert IdentityFeatureExtractor().features(np.zeros((0, 2))).shape == (0, 2)
  assert not IdentityFeatureExtractor().has_class_oracle
  with pytest.raises(NotImplementedError, match="no class head"):
    IdentityFeatureExtractor().probabilities(points)
  with pytest.raises(ValueError, match=r"\[N, D\]") as info:
    IdentityFeatureExtractor().features(np.zeros((4, 8, 8, 1)))
  assert "\n" not in str(info.value)


def test_manifold_rate_on_points_flags_the_point_off_the_data():
  rng = np.random.default_rng(1)
  real = rng.normal(0, 0.01, (200, 2)).astype(np.float32)
  fake = np.array([[0.0, 0.0], [0.005, 0.0], [1.0, 1.0]], np.float32)
  extractor = IdentityFeatureExtractor()
  estimate, flags = hallucination.manifold_hallucination_rate(
    extractor.features(real), extractor.features(fake), k=3
  )
  np.testing.assert_array_equal(flags, [False, False, True])
  assert int(estimate.count) == 1
