"""Summaries of repeated measurements: the mean with its standard error.

One function for both uses: per-sample fidelity metrics of a run (`experiments.evaluate`) and
per-seed rates of a benchmark setting (`hallucination_benchmark.tables`).
"""

from typing import Iterable, Optional, Tuple

import numpy as np


def mean_and_standard_error(values: Iterable[Optional[float]]) -> Tuple[float, float]:
  """(mean, std(ddof=1) / sqrt(n)) of the finite values, None left out.

  Non-finite values are dropped (the PSNR of a perfect reconstruction is inf; a rate a seed
  could not measure is NaN). NaN mean without values; NaN standard error with one.
  """
  values = np.asarray([v for v in values if v is not None], np.float64)
  values = values[np.isfinite(values)]
  if not len(values):
    return float("nan"), float("nan")
  if len(values) == 1:
    return float(values[0]), float("nan")
  return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))
