"""Tests of the calibration statistics against scipy.stats and hand-computed values."""

import numpy as np
import pytest
from scipy import stats

from aigc_jax.evaluation import calibration

EXACT = np.array([0.02, 0.10, 0.10, 0.35, 0.50, 0.22, 0.07, 0.90])
ESTIMATE = np.array([0.05, 0.08, 0.15, 0.30, 0.55, 0.15, 0.15, 0.70])  # Ties: 0.15 twice.
LOW = ESTIMATE - 0.04
HIGH = ESTIMATE + 0.04


def test_correlations_match_scipy():
  assert calibration.pearson_correlation(ESTIMATE, EXACT) == pytest.approx(
    stats.pearsonr(ESTIMATE, EXACT).statistic, abs=1e-12
  )
  assert calibration.spearman_correlation(ESTIMATE, EXACT) == pytest.approx(
    stats.spearmanr(ESTIMATE, EXACT).statistic, abs=1e-12
  )
  np.testing.assert_array_equal(calibration.average_ranks(ESTIMATE), stats.rankdata(ESTIMATE))
  rng = np.random.default_rng(0)
  x, y = rng.integers(0, 5, 40).astype(float), rng.normal(size=40)  # Many ties.
  assert calibration.spearman_correlation(x, y) == pytest.approx(
    stats.spearmanr(x, y).statistic, abs=1e-12
  )
  assert calibration.pearson_correlation(x, -3 * x + 1) == pytest.approx(-1.0)


def test_statistics_by_hand():
  result = calibration.calibration_statistics(EXACT, ESTIMATE, LOW, HIGH)
  # Errors, estimate - exact: .03 -.02 .05 -.05 .05 -.07 .08 -.20.
  assert result.mean_bias == pytest.approx(-0.13 / 8)
  assert result.mean_absolute_error == pytest.approx(0.55 / 8)
  # Contained (|error| <= 0.04): models 0 and 1 only.
  assert result.interval_coverage == pytest.approx(2 / 8)
  assert result.num_models == 8
  assert result.as_dict()["num_models"] == 8
  assert np.isnan(calibration.calibration_statistics(EXACT, ESTIMATE).interval_coverage)
  # The interval is closed: an exact rate on its bound counts as contained.
  on_bound = calibration.calibration_statistics([0.1, 0.2], [0.15, 0.2], [0.1, 0.2], [0.2, 0.2])
  assert on_bound.interval_coverage == 1.0


def test_a_constant_estimator_has_no_correlation():
  result = calibration.calibration_statistics(EXACT, np.full(8, 0.3))
  assert np.isnan(result.pearson) and np.isnan(result.spearman)
  assert result.mean_bias == pytest.approx(0.3 - EXACT.mean())


def test_table_of_several_estimators():
  table = calibration.calibration_table(
    EXACT, {"perfect": (EXACT, EXACT, EXACT), "noisy": (ESTIMATE, LOW, HIGH)}
  )
  assert table["perfect"].pearson == pytest.approx(1.0)
  assert table["perfect"].mean_bias == 0.0 and table["perfect"].interval_coverage == 1.0
  assert table["noisy"] == calibration.calibration_statistics(EXACT, ESTIMATE, LOW, HIGH)


@pytest.mark.parametrize(
  "args, message",
  [
    ((EXACT, ESTIMATE[:5]), "M = 8"),
    ((EXACT, ESTIMATE, LOW, None), "both"),
    ((EXACT[:1], ESTIMATE[:1]), "at least 2"),
    ((EXACT, np.where(EXACT > 0.5, np.nan, ESTIMATE)), "NaN"),
  ],
)
def test_bad_inputs_are_one_clear_error(args, message):
  with pytest.raises(ValueError, match=message) as info:
    calibration.calibration_statistics(*args)
  assert "\n" not in str(info.value)
