"""Means with standard errors, and Welch's interval of a difference of means with its verdict,
against hand computations and scipy.stats.ttest_ind."""

import math

import numpy as np
import pytest
from scipy import stats

from aigc_jax.evaluation import statistics

# Student's t quantiles at 0.975 from a printed table (df 2 and 4).
T_975 = {2: 4.302652730, 4: 2.776445105}


def test_mean_and_standard_error_by_hand():
  mean, standard_error = statistics.mean_and_standard_error([1.0, 2.0, None, 6.0, float("nan")])
  assert mean == pytest.approx(3.0)
  assert standard_error == pytest.approx(math.sqrt(7.0) / math.sqrt(3.0))  # var = 7.


def test_welch_interval_by_hand():
  """a = 1, 2, 3 and b = 4, 5, 6: each variance 1, v = 1/3, se = sqrt(2/3), df = (2/3)^2 /
  (2 (1/3)^2 / 2) = 4, difference -3 -+ 2.776445 * 0.816497."""
  interval = statistics.welch_difference_interval([1, 2, 3], [4, 5, 6])
  assert interval.difference == pytest.approx(-3.0)
  assert interval.standard_error == pytest.approx(math.sqrt(2 / 3))
  assert interval.degrees_of_freedom == pytest.approx(4.0)
  half = T_975[4] * math.sqrt(2 / 3)
  assert (interval.low, interval.high) == (pytest.approx(-3 - half), pytest.approx(-3 + half))
  assert (interval.num_a, interval.num_b, interval.confidence) == (3, 3, 0.95)


def test_unequal_sizes_and_variances_by_hand():
  """a = 1, 2, 3 (v = 1/3), b = 2, 4, 6, 8 (variance 20/3, v = 5/3): se = sqrt(2),
  df = 4 / ((1/9) / 2 + (25/9) / 3) = 216 / 53."""
  interval = statistics.welch_difference_interval([1, 2, 3], [2, 4, 6, 8])
  assert interval.standard_error == pytest.approx(math.sqrt(2))
  assert interval.degrees_of_freedom == pytest.approx(216 / 53)
  assert interval.difference == pytest.approx(-3.0)


@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welch_interval_equals_scipy(seed, confidence):
  rng = np.random.RandomState(seed)
  a = rng.normal(0.3, 0.05, size=5)
  b = rng.normal(0.35, 0.15, size=3 + seed)
  interval = statistics.welch_difference_interval(a, b, confidence)
  result = stats.ttest_ind(a, b, equal_var=False)
  expected = result.confidence_interval(confidence)
  assert interval.low == pytest.approx(expected.low, rel=1e-10)
  assert interval.high == pytest.approx(expected.high, rel=1e-10)
  assert interval.degrees_of_freedom == pytest.approx(result.df, rel=1e-10)


def test_one_constant_group_leaves_the_other_groups_degrees_of_freedom():
  """a constant: v_a = 0, so df = v_b^2 / (v_b^2 / (n_b - 1)) = n_b - 1 = 2."""
  interval = statistics.welch_difference_interval([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
  assert interval.degrees_of_freedom == pytest.approx(2.0)
  half = T_975[2] * math.sqrt(1 / 3)
  assert (interval.low, interval.high) == (pytest.approx(-1 - half), pytest.approx(-1 + half))


def test_two_constant_groups_give_a_point_interval():
  """Zero variance in both: se 0, df undefined (NaN), the interval is the difference itself."""
  same = statistics.welch_difference_interval([1.0, 1.0, 1.0], [1.0, 1.0])
  assert (same.low, same.high, same.standard_error) == (0.0, 0.0, 0.0)
  assert math.isnan(same.degrees_of_freedom)
  assert statistics.difference_verdict(same) == statistics.NO_MEASURABLE_CHANGE
  apart = statistics.welch_difference_interval([0.5, 0.5, 0.5], [0.75, 0.75, 0.75])
  assert (apart.low, apart.high) == (-0.25, -0.25)
  assert statistics.difference_verdict(apart) == statistics.BETTER


def test_values_not_measured_are_left_out():
  with_gaps = statistics.welch_difference_interval([1, 2, None, 3, float("nan")], [4, 5, 6])
  assert with_gaps == statistics.welch_difference_interval([1, 2, 3], [4, 5, 6])


@pytest.mark.parametrize(
  "a,b,confidence,message",
  [
    ([1.0], [1.0, 2.0], 0.95, "at least 2 finite values per group .* got 1 and 2"),
    ([1.0, 2.0], [1.0, float("nan")], 0.95, "got 2 and 1"),
    ([1.0, 2.0], [1.0, 2.0], 1.0, "confidence is 1.0"),
  ],
)
def test_what_welch_cannot_judge_is_refused(a, b, confidence, message):
  with pytest.raises(ValueError, match=message):
    statistics.welch_difference_interval(a, b, confidence)


def _interval(low, high):
  return statistics.DifferenceInterval((low + high) / 2, low, high, 1.0, 4.0, 0.95, 3, 3)


@pytest.mark.parametrize(
  "low,high,lower_is_better,verdict",
  [
    (-0.3, -0.1, True, statistics.BETTER),
    (0.1, 0.3, True, statistics.WORSE),
    (-0.1, 0.3, True, statistics.NO_MEASURABLE_CHANGE),
    (-0.3, 0.0, True, statistics.NO_MEASURABLE_CHANGE),  # Touching 0 does not exclude it.
    (0.0, 0.2, True, statistics.NO_MEASURABLE_CHANGE),
    (-0.3, -0.1, False, statistics.WORSE),  # E.g. a high-quality fraction: higher is better.
    (0.1, 0.3, False, statistics.BETTER),
  ],
)
def test_verdicts(low, high, lower_is_better, verdict):
  assert statistics.difference_verdict(_interval(low, high), lower_is_better) == verdict


def test_a_clear_improvement_over_seeds_is_better_and_a_small_one_is_not():
  family = [0.70, 0.72, 0.69, 0.71, 0.73]
  assert statistics.difference_verdict(
    statistics.welch_difference_interval([0.30, 0.33, 0.31, 0.29, 0.32], family)
  ) == (statistics.BETTER)
  assert statistics.difference_verdict(
    statistics.welch_difference_interval([0.70, 0.66, 0.74, 0.69, 0.70], family)
  ) == (statistics.NO_MEASURABLE_CHANGE)
