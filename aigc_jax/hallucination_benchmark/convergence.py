"""When a benchmark setting has trained long enough: the convergence rule of issue 25.

A setting is measured at log-spaced steps along training (`log_spaced_steps`). Its learning
curve is the exact rate of each seed at each of those steps. The rule (`check_convergence`):

* Compare two points of the curve: the LAST point (step T), and the REFERENCE point, the
  largest measured step at or below T / 2 (exactly T / 2 when it was measured), so that the
  two are at least one doubling of the steps apart.
* At each point take the mean over seeds of the finite values (a NaN, a seed that could not
  be measured there, is left out), and at the last point the standard error of that mean,
  std(ddof=1) / sqrt(n) over its n finite seeds.
* The setting is converged when |mean(T) - mean(reference)| < max(2 * standard error,
  0.01) (strictly less). The standard error is the one the benchmark's table prints beside
  the rate: "converged" means that the last doubling moved the rate by less than the table
  can resolve, or by less than 0.01.
* One finite seed at the last point: the standard error is undefined, and the threshold is
  the 0.01 floor alone (`ConvergenceCheck.standard_error` is NaN).

Training continues, doubling its steps, up to a stated cap until the rule holds
(`next_budget`). A curve from a longer run extends a shorter one only when the learning rate
of the steps already trained does not depend on the run's length (a constant schedule; not
a decay at the end of training).

Pure numpy: the runner, the tables and the tests call it without jax.
"""

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import numpy as np

# The smallest change that counts as "still moving", whatever the seeds' spread.
MIN_CHANGE = 0.01
NUM_STANDARD_ERRORS = 2.0


@dataclasses.dataclass(frozen=True)
class ConvergenceCheck:
  """The rule applied to one learning curve (see the module docstring).

  Attributes:
    converged: `change < threshold`.
    last_step, reference_step: the two points compared (reference <= last_step / 2).
    last_mean, reference_mean: means over the finite seeds at those points.
    change: |last_mean - reference_mean|.
    standard_error: of the mean at the last point; NaN with one finite seed.
    threshold: max(NUM_STANDARD_ERRORS * standard_error, MIN_CHANGE), the floor alone when
      the standard error is NaN.
  """

  converged: bool
  last_step: int
  reference_step: int
  last_mean: float
  reference_mean: float
  change: float
  standard_error: float
  threshold: float


def _finite_mean_and_standard_error(values: np.ndarray, step: int):
  finite = values[np.isfinite(values)]
  if not len(finite):
    raise ValueError(f"No seed has a finite value at step {step}; measure at least one.")
  if len(finite) == 1:
    return float(finite[0]), float("nan")
  return float(finite.mean()), float(finite.std(ddof=1) / math.sqrt(len(finite)))


def check_convergence(
  steps: Sequence[int],
  values,
  *,
  min_change: float = MIN_CHANGE,
  num_standard_errors: float = NUM_STANDARD_ERRORS,
) -> ConvergenceCheck:
  """Whether a learning curve has converged over its last doubling of steps.

  Args:
    steps: `[P]` strictly increasing training steps (>= 1) at which the curve was measured.
    values: `[S, P]` the exact rate of each of S seeds at each step (NaN: not measured).
    min_change: the floor of the threshold.
    num_standard_errors: the threshold in standard errors of the last point's mean.
  Returns:
    The `ConvergenceCheck`.
  Raises:
    ValueError (one line): fewer than 2 points, steps not strictly increasing or below 1,
    values not `[S, P]`, no point at or below half the last step, or a compared point with
    no finite value.
  """
  steps = np.asarray(steps)
  values = np.asarray(values, np.float64)
  if steps.ndim != 1 or len(steps) < 2:
    raise ValueError(
      f"A learning curve needs at least 2 measured steps to show a change, got {steps.size}; "
      "measure more points (log_spaced_steps)."
    )
  if np.any(np.diff(steps) <= 0) or steps[0] < 1:
    raise ValueError(f"The steps must be strictly increasing and >= 1, got {steps.tolist()}.")
  if values.ndim != 2 or values.shape[1] != len(steps):
    raise ValueError(
      f"The values must be [seeds, {len(steps)} steps], got shape {values.shape}; pass one "
      "row per seed."
    )
  last_step = int(steps[-1])
  at_or_below_half = np.flatnonzero(2 * steps <= last_step)
  if not len(at_or_below_half):
    raise ValueError(
      f"No measured step is at or below half the last step {last_step} (the first is "
      f"{int(steps[0])}); measure from an earlier step so the last doubling is covered."
    )
  reference = int(at_or_below_half[-1])
  last_mean, standard_error = _finite_mean_and_standard_error(values[:, -1], last_step)
  reference_mean, _ = _finite_mean_and_standard_error(values[:, reference], int(steps[reference]))
  threshold = (
    min_change
    if math.isnan(standard_error)
    else max(num_standard_errors * standard_error, min_change)
  )
  change = abs(last_mean - reference_mean)
  return ConvergenceCheck(
    converged=bool(change < threshold),
    last_step=last_step,
    reference_step=int(steps[reference]),
    last_mean=last_mean,
    reference_mean=reference_mean,
    change=change,
    standard_error=standard_error,
    threshold=threshold,
  )


def log_spaced_steps(cap: int, num_points: int = 8, first: int = 1) -> np.ndarray:
  """`num_points` distinct integer steps from `first` to `cap` (both included), spaced
  evenly in log(step): np.geomspace rounded, nudged apart where rounding made two equal.

  Returns:
    `[num_points]` int64, strictly increasing; `[0] == first`, `[-1] == cap`.
  Raises:
    ValueError (one line): `num_points` < 8, `first` < 1, or fewer than `num_points`
    integers in [first, cap].
  """
  cap, num_points, first = int(cap), int(num_points), int(first)
  if num_points < 8:
    raise ValueError(f"num_points is {num_points}; a learning curve needs at least 8 points.")
  if first < 1:
    raise ValueError(f"first is {first}; the first measured step must be >= 1.")
  if cap - first + 1 < num_points:
    raise ValueError(
      f"[{first}, {cap}] holds fewer than {num_points} distinct steps; raise the cap or "
      "lower first."
    )
  steps = np.rint(np.geomspace(first, cap, num_points)).astype(np.int64)
  steps[0], steps[-1] = first, cap
  for i in range(1, num_points):  # Forward: at least one step apart...
    steps[i] = max(steps[i], steps[i - 1] + 1)
  for i in range(num_points - 2, -1, -1):  # ...and backward, so that the last stays the cap.
    steps[i] = min(steps[i], steps[i + 1] - 1)
  return steps


def doubling_checkpoints(num_steps: int, num_points: int = 8) -> Tuple[int, ...]:
  """round(num_steps / 2^k) for k = num_points - 1 .. 0 (distinct, >= 1), ascending: each
  interval one doubling of training, so the rule's reference point is exactly half the last
  step. The benchmark's standard protocol and Aithal et al.'s protocol measure at these."""
  return tuple(sorted({max(1, int(round(num_steps / 2.0**k))) for k in range(num_points)}))


def next_budget(trained_steps: int, converged: bool, cap: int) -> Optional[int]:
  """The number of steps to train to next, or None when the setting is done.

  Done when it converged or `trained_steps` reached `cap` (then the table marks the row
  unconverged unless `converged`). Otherwise the steps double, up to the cap:
  `min(2 * trained_steps, cap)`.
  """
  trained_steps, cap = int(trained_steps), int(cap)
  if trained_steps < 1 or cap < 1:
    raise ValueError(f"trained_steps ({trained_steps}) and cap ({cap}) must be >= 1.")
  if converged or trained_steps >= cap:
    return None
  return min(2 * trained_steps, cap)
