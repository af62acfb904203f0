"""Tests of rejection filtering: the curve on constructed cases, the thresholds and the scores."""

import numpy as np
import pytest

from aigc_jax.data import gaussian_mixtures as gm
from aigc_jax.evaluation import distribution
from aigc_jax.evaluation import filtering
from aigc_jax.evaluation.features import IdentityFeatureExtractor

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
VALID = np.array([True, True, False, True, False, True, False, False])  # 4 valid, 4 not.


def test_curve_on_a_hand_counted_case():
  curve = filtering.filtering_curve(SCORES, VALID, thresholds=[0.65, 0.1, 0.45, 1.0, 0.3])
  np.testing.assert_array_equal(curve.thresholds, [0.1, 0.3, 0.45, 0.65, 1.0])  # Sorted.
  # Kept at each threshold (score >= t): all 8; 7 (drops 0.2); 5; 3 (0.9 0.8 0.7); none.
  np.testing.assert_allclose(curve.kept_fraction, [1.0, 7 / 8, 5 / 8, 3 / 8, 0.0])
  np.testing.assert_allclose(curve.valid_kept_fraction, [1.0, 1.0, 3 / 4, 2 / 4, 0.0])
  np.testing.assert_allclose(curve.hallucinations_removed_fraction, [0.0, 1 / 4, 2 / 4, 3 / 4, 1.0])
  assert (curve.num_valid, curve.num_hallucinated) == (4, 4)
  assert curve.as_dict()["num_valid"] == 4


def test_default_thresholds_give_the_whole_curve_and_ties_are_kept():
  scores = np.array([2.0, 1.0, 1.0, 3.0, 0.5])
  valid = np.array([True, False, True, True, False])
  curve = filtering.filtering_curve(scores, valid)
  np.testing.assert_array_equal(curve.thresholds, [0.5, 1.0, 2.0, 3.0, np.inf])
  # At t = 1.0 both tied samples are kept (>=): 4 of 5.
  np.testing.assert_allclose(curve.kept_fraction, [1.0, 0.8, 0.4, 0.2, 0.0])
  np.testing.assert_allclose(curve.valid_kept_fraction, [1.0, 1.0, 2 / 3, 1 / 3, 0.0])
  np.testing.assert_allclose(curve.hallucinations_removed_fraction, [0.0, 0.5, 1.0, 1.0, 1.0])
  assert np.all(np.diff(curve.valid_kept_fraction) <= 0)  # Monotone.


def test_a_perfect_score_separates_exactly_and_empty_classes_give_nan():
  valid = np.arange(100) % 3 != 0
  scores = np.where(valid, 1.0, 0.0) + np.linspace(0, 0.5, 100)  # Every valid one above.
  threshold = scores[valid].min()
  curve = filtering.filtering_curve(scores, valid, [threshold])
  assert curve.valid_kept_fraction[0] == 1.0 and curve.hallucinations_removed_fraction[0] == 1.0
  all_valid = filtering.filtering_curve(scores, np.ones(100, bool), [0.5])
  assert np.isnan(all_valid.hallucinations_removed_fraction[0])
  assert all_valid.valid_kept_fraction[0] == np.mean(scores >= 0.5)
  assert np.isnan(
    filtering.filtering_curve(scores, np.zeros(100, bool), [0.5]).valid_kept_fraction[0]
  )


def test_threshold_keeping_valid():
  rng = np.random.default_rng(0)
  scores = rng.permutation(50).astype(float)
  valid = np.zeros(50, bool)
  valid[rng.choice(50, 25, replace=False)] = True
  threshold = filtering.threshold_keeping_valid(scores, valid, 0.96)  # 24 of 25.
  assert threshold == np.sort(scores[valid])[1]  # The 24th largest valid score.
  curve = filtering.filtering_curve(scores, valid, [threshold])
  assert curve.valid_kept_fraction[0] == 24 / 25
  assert filtering.threshold_keeping_valid(scores, valid, 1.0) == scores[valid].min()
  with pytest.raises(ValueError, match="valid_kept"):
    filtering.threshold_keeping_valid(scores, valid, 0.0)


@pytest.mark.parametrize(
  "scores, valid, message",
  [
    (np.array([0.1, np.nan]), np.array([True, False]), "NaN"),
    (np.array([0.1, 0.2]), np.array([1, 0]), "bool"),
    (np.array([0.1, 0.2]), np.array([True]), "matching"),
    (np.array([]), np.array([], bool), "no samples"),
  ],
)
def test_bad_inputs_are_one_clear_error(scores, valid, message):
  with pytest.raises(ValueError, match=message) as info:
    filtering.filtering_curve(scores, valid)
  assert "\n" not in str(info.value)


def test_classifier_confidence_is_the_top_probability():
  probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]])
  np.testing.assert_allclose(filtering.classifier_confidence(probs), [0.7, 0.5, 1 / 3])
  with pytest.raises(ValueError, match=r"\[N, K\]"):
    filtering.classifier_confidence(np.ones(3))


def test_manifold_score_filters_off_mode_points_on_the_ring():
  """Real ring points as the reference, the identity feature space, and generated points that
  are either on a mode or between modes: every on-mode point scores above every off-mode one,
  so one threshold keeps all valid points and removes all hallucinations."""
  real, _ = gm.split_points("ring8", "train")
  real = real[:2000]
  rng = np.random.default_rng(1)
  modes = rng.integers(0, 8, 300)
  on_mode = gm.RING8.means[modes] + rng.normal(0, 0.005, (300, 2))  # Within 1.5 std.
  angles = (modes + rng.uniform(0.3, 0.7, 300)) * np.pi / 4
  between = np.stack([np.cos(angles), np.sin(angles)], 1)  # On the circle, between modes.
  generated = np.concatenate([on_mode, between]).astype(np.float32)
  valid = gm.RING8.support_check(generated)
  np.testing.assert_array_equal(valid, np.arange(600) < 300)
  features = IdentityFeatureExtractor()
  scores = filtering.manifold_realism_score(
    features.features(real), features.features(generated), k=3
  )
  np.testing.assert_allclose(scores, distribution.realism_score(real, generated, 3), rtol=1e-6)
  assert scores[valid].min() > 10 * scores[~valid].max()
  curve = filtering.filtering_curve(scores, valid, [scores[valid].min()])
  assert curve.valid_kept_fraction[0] == 1.0 and curve.hallucinations_removed_fraction[0] == 1.0
  # The score falls with distance from the data.
  far = filtering.manifold_realism_score(real, np.array([[1.1, 0.0], [1.5, 0.0], [3.0, 0.0]]))
  assert far[0] > far[1] > far[2]


def test_trajectory_variance_score_is_minus_the_mean_coordinate_variance_over_steps():
  # Sample 0 settles (the same prediction at every step); sample 1 swings between two modes.
  x0_hats = np.zeros((4, 2, 2))
  x0_hats[:, 1, 0] = [1.0, -1.0, 1.0, -1.0]  # Variance 1 in coordinate 0, 0 in coordinate 1.
  x0_hats[:, 1, 1] = [0.0, 0.0, 0.0, 2.0]  # Mean 0.5: variance (3 * 0.25 + 2.25) / 4 = 0.75.
  np.testing.assert_allclose(filtering.trajectory_variance_score(x0_hats), [0.0, -(1.0 + 0.75) / 2])
  with pytest.raises(ValueError, match="S >= 2"):
    filtering.trajectory_variance_score(x0_hats[:1])
