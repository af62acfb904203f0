"""Summaries of repeated measurements: the mean with its standard error, and the Welch
interval of a difference of two means with the verdict it supports.

One function for both uses: per-sample fidelity metrics of a run (`experiments.evaluate`) and
per-seed rates of a benchmark setting (`hallucination_benchmark.tables`). The benchmark
compares a variant with its family by `welch_difference_interval` over their seeds, and calls
the variant better or worse only where that interval excludes 0 (`difference_verdict`).
"""

import dataclasses
import math
from typing import Iterable, Optional, Tuple

import numpy as np
from scipy import stats

BETTER = "better"
WORSE = "worse"
NO_MEASURABLE_CHANGE = "no measurable change"


def _finite(values: Iterable[Optional[float]]) -> np.ndarray:
  values = np.asarray([v for v in values if v is not None], np.float64)
  return values[np.isfinite(values)]


def mean_and_standard_error(values: Iterable[Optional[float]]) -> Tuple[float, float]:
  """(mean, std(ddof=1) / sqrt(n)) of the finite values, None left out.

  Non-finite values are dropped (the PSNR of a perfect reconstruction is inf; a rate a seed
  could not measure is NaN). NaN mean without values; NaN standard error with one.
  """
  values = _finite(values)
  if not len(values):
    return float("nan"), float("nan")
  if len(values) == 1:
    return float(values[0]), float("nan")
  return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


@dataclasses.dataclass(frozen=True)
class DifferenceInterval:
  """A confidence interval of mean(a) - mean(b) from two independent groups (Welch).

  Attributes:
    difference: mean(a) - mean(b).
    low, high: the interval, difference -+ t * standard_error.
    standard_error: sqrt(var(a) / n_a + var(b) / n_b), variances with ddof=1.
    degrees_of_freedom: Welch-Satterthwaite's; NaN when both groups have zero variance.
    confidence: e.g. 0.95.
    num_a, num_b: the finite values of each group.
  """

  difference: float
  low: float
  high: float
  standard_error: float
  degrees_of_freedom: float
  confidence: float
  num_a: int
  num_b: int

  def excludes_zero(self) -> bool:
    return self.low > 0 or self.high < 0


def welch_difference_interval(
  a: Iterable[Optional[float]], b: Iterable[Optional[float]], confidence: float = 0.95
) -> DifferenceInterval:
  """Welch's two-sample interval of mean(a) - mean(b), unequal variances.

  E.g. `a`: a variant's per-seed rates, `b`: its family's. With s_i^2 the ddof=1 variance and
  n_i the number of finite values of group i, v_i = s_i^2 / n_i:
    standard error  se = sqrt(v_a + v_b)
    degrees of freedom  df = (v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1))
    interval  difference -+ t_{(1 + confidence) / 2}(df) * se  (Student's t quantile).
  Equal to `scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)`.

  Degenerate case: both groups with zero variance (every seed measured the same value in
  each) have se = 0 and an undefined df (NaN); the interval is then the point [difference,
  difference]: the seeds show no spread to be uncertain about (two identical groups give
  [0, 0], "no measurable change"; two constant, different groups exclude 0).

  Args:
    a, b: the values of each group; None and non-finite values are left out.
    confidence: in (0, 1).
  Raises:
    ValueError (one line): a group with fewer than 2 finite values, or `confidence`
    outside (0, 1).
  """
  if not 0 < confidence < 1:
    raise ValueError(f"confidence is {confidence}; give a level in (0, 1), e.g. 0.95.")
  a, b = _finite(a), _finite(b)
  if len(a) < 2 or len(b) < 2:
    raise ValueError(
      f"Welch's interval needs at least 2 finite values per group to estimate their spread, "
      f"got {len(a)} and {len(b)}; measure more seeds."
    )
  var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  difference = float(a.mean() - b.mean())
  standard_error = math.sqrt(var_a + var_b)
  if standard_error == 0:
    return DifferenceInterval(
      difference, difference, difference, 0.0, float("nan"), confidence, len(a), len(b)
    )
  degrees_of_freedom = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
  half_width = float(stats.t.ppf((1 + confidence) / 2, degrees_of_freedom)) * standard_error
  return DifferenceInterval(
    difference=difference,
    low=difference - half_width,
    high=difference + half_width,
    standard_error=standard_error,
    degrees_of_freedom=float(degrees_of_freedom),
    confidence=confidence,
    num_a=len(a),
    num_b=len(b),
  )


def difference_verdict(interval: DifferenceInterval, lower_is_better: bool = True) -> str:
  """BETTER, WORSE or NO_MEASURABLE_CHANGE for a (variant - family) interval.

  Better or worse only when the interval excludes 0: with `lower_is_better` (a hallucination
  rate), an interval entirely below 0 is BETTER, entirely above WORSE. An interval touching 0
  (an end exactly 0) does not exclude it.
  """
  if not interval.excludes_zero():
    return NO_MEASURABLE_CHANGE
  below = interval.high < 0
  return BETTER if below == lower_is_better else WORSE
