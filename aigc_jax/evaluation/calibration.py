"""How well an estimated hallucination rate tracks the exact one, over many models.

On a dataset whose support is known exactly, every model (family, seed, checkpoint) has an
exact hallucination rate and, for each estimator (manifold rate, unrecognisable rate, ...),
an estimate with a 95% interval. `calibration_statistics` summarises one estimator over the
models: Pearson and Spearman correlations with the exact rate (does it rank and scale
models correctly?), mean bias (does it over- or under-count?), and the fraction of its
intervals that contain the exact rate (are its error bars honest?). numpy, float64.
"""

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class CalibrationStatistics:
  """One estimator against the exact rate over M models.

  Attributes:
    pearson: linear correlation of estimate and exact rate (NaN if either is constant).
    spearman: rank correlation, ties given their average rank (NaN if either is constant).
    mean_bias: mean of (estimate - exact); positive = the estimator over-counts.
    mean_absolute_error: mean of |estimate - exact|.
    interval_coverage: fraction of models whose [ci_low, ci_high] contains the exact rate
      (closed interval); NaN when no intervals were given. About 0.95 for honest 95%
      intervals of an unbiased estimator.
    num_models: M.
  """

  pearson: float
  spearman: float
  mean_bias: float
  mean_absolute_error: float
  interval_coverage: float
  num_models: int

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def _vector(x, name: str, length: Optional[int] = None) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 1 or (length is not None and len(x) != length):
    raise ValueError(
      f"{name} must be [M]{'' if length is None else f' with M = {length}'}, got shape {x.shape}"
    )
  if np.isnan(x).any():
    raise ValueError(f"{name} contains NaN.")
  return x


def pearson_correlation(x, y) -> float:
  """Pearson's r of [M] x and y (M >= 2); NaN when either is constant."""
  x, y = _vector(x, "x"), _vector(y, "y", len(np.asarray(x)))
  x, y = x - x.mean(), y - y.mean()
  denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
  return float(np.clip(np.sum(x * y) / denominator, -1.0, 1.0)) if denominator > 0 else np.nan


def average_ranks(x) -> np.ndarray:
  """Ranks 1..M of [M] x, tied values sharing the mean of their ranks (as scipy.stats.rankdata)."""
  x = _vector(x, "x")
  order = np.argsort(x, kind="stable")
  sorted_x = x[order]
  # Runs of equal values: [start, stop) in sorted order; each gets the mean rank of its run.
  starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
  stops = np.r_[starts[1:], len(x)]
  ranks = np.empty(len(x))
  ranks[order] = np.repeat((starts + stops + 1) / 2.0, stops - starts)
  return ranks


def spearman_correlation(x, y) -> float:
  """Spearman's rho of [M] x and y: Pearson's r of their average ranks."""
  return pearson_correlation(average_ranks(x), average_ranks(y))


def calibration_statistics(
  exact_rates, estimates, ci_low=None, ci_high=None
) -> CalibrationStatistics:
  """Summarises one estimator against exact rates over M models (see the module docstring).

  Args:
    exact_rates: [M] exact hallucination rates (from a `SupportCheck`).
    estimates: [M] the estimator's rates for the same models.
    ci_low, ci_high: [M] its 95% interval bounds, or both None.

  Returns:
    A `CalibrationStatistics`.
  """
  exact = _vector(exact_rates, "exact_rates")
  estimates = _vector(estimates, "estimates", len(exact))
  if len(exact) < 2:
    raise ValueError(f"calibration needs at least 2 models, got {len(exact)}")
  if (ci_low is None) != (ci_high is None):
    raise ValueError("give both ci_low and ci_high, or neither.")
  coverage = np.nan
  if ci_low is not None:
    low, high = _vector(ci_low, "ci_low", len(exact)), _vector(ci_high, "ci_high", len(exact))
    coverage = float(np.mean((low <= exact) & (exact <= high)))
  error = estimates - exact
  return CalibrationStatistics(
    pearson=pearson_correlation(estimates, exact),
    spearman=spearman_correlation(estimates, exact),
    mean_bias=float(error.mean()),
    mean_absolute_error=float(np.abs(error).mean()),
    interval_coverage=coverage,
    num_models=len(exact),
  )


def calibration_table(
  exact_rates, estimators: Dict[str, Tuple]
) -> Dict[str, CalibrationStatistics]:
  """`calibration_statistics` for several estimators of the same models.

  Args:
    exact_rates: [M].
    estimators: {name: (estimates [M], ci_low [M] or None, ci_high [M] or None)}.
  """
  return {name: calibration_statistics(exact_rates, *values) for name, values in estimators.items()}
