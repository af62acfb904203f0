"""The convergence rule on planted learning curves, the measurement steps and the budgets."""

import math
import subprocess
import sys

import numpy as np
import pytest

from aigc_jax.hallucination_benchmark import convergence

STEPS = convergence.log_spaced_steps(16000, 8, first=125)  # 125 ... 16000, ratio 2.


def _seeds(curve, offsets):
  """`[S, P]`: the curve shifted by each seed's offset."""
  return np.asarray(curve, np.float64)[None, :] + np.asarray(offsets, np.float64)[:, None]


def test_the_planted_steps_double():
  np.testing.assert_array_equal(STEPS, [125, 250, 500, 1000, 2000, 4000, 8000, 16000])


def test_a_flat_curve_has_converged():
  values = _seeds(np.full(len(STEPS), 0.3), [0.0, 0.001, -0.001, 0.002, -0.002])
  check = convergence.check_convergence(STEPS, values)
  assert check.converged
  assert (check.last_step, check.reference_step) == (16000, 8000)
  assert check.change == pytest.approx(0.0, abs=1e-12)


def test_a_curve_still_falling_has_not():
  """Rate 0.9 * (125 / step) ** 0.2: the last doubling takes it from 0.341 to 0.297."""
  curve = 0.9 * (125.0 / STEPS) ** 0.2
  values = _seeds(curve, [0.0, 0.002, -0.002, 0.004, -0.004])
  check = convergence.check_convergence(STEPS, values)
  assert not check.converged
  assert check.change == pytest.approx(0.9 * (1 / 64) ** 0.2 - 0.9 * (1 / 128) ** 0.2, rel=1e-9)
  # The seeds agree closely, so the floor is the threshold.
  assert check.threshold == convergence.MIN_CHANGE


def test_a_noisy_flat_curve_with_a_large_seed_spread_has_converged():
  """Seeds at 0.2, 0.5 and 0.8: the mean moves by 0.05 (above the 0.01 floor), but the last
  point's standard error is 0.3 / sqrt(3) = 0.173, and 2 of them exceed 0.05."""
  flat = np.zeros(len(STEPS))
  values = _seeds(flat, [0.2, 0.5, 0.8])
  values[:, -1] += [0.05, 0.05, 0.05]  # The last point's mean moves by 0.05.
  last = values[:, -1]
  standard_error = np.std(last, ddof=1) / math.sqrt(3)  # 0.3 / sqrt(3) = 0.173.
  check = convergence.check_convergence(STEPS, values)
  assert check.change == pytest.approx(0.05)
  assert check.standard_error == pytest.approx(standard_error)
  assert check.threshold == pytest.approx(2 * standard_error)
  assert check.converged
  # The same move with the seeds together is not within the noise.
  tight = _seeds(flat, [0.5, 0.5, 0.5])
  tight[:, -1] += 0.05
  assert not convergence.check_convergence(STEPS, tight).converged


def test_the_standard_error_is_the_last_points_over_seeds():
  """Hand computation: last values 0.1, 0.2, 0.6: mean 0.3, std(ddof=1) sqrt(0.07)."""
  values = np.array([[0.1, 0.1], [0.2, 0.2], [0.6, 0.6]])
  check = convergence.check_convergence([10, 20], values)
  assert check.standard_error == pytest.approx(math.sqrt(0.07) / math.sqrt(3), rel=1e-12)
  assert check.threshold == pytest.approx(2 * math.sqrt(0.07 / 3), rel=1e-12)
  assert (check.last_mean, check.reference_mean) == (pytest.approx(0.3), pytest.approx(0.3))


def test_a_curve_flat_only_over_the_last_doubling():
  """Falling until step 8000 then flat: converged. Flat only from 12000 (8000 still on the
  slope): not, though its last two points agree."""
  curve = 0.9 * (125.0 / np.minimum(STEPS, 8000)) ** 0.2
  offsets = [0.0, 0.001, -0.001]
  assert convergence.check_convergence(STEPS, _seeds(curve, offsets)).converged
  assert not convergence.check_convergence(STEPS[:-1], _seeds(curve[:-1], offsets)).converged

  steps = np.array([125, 1000, 8000, 12000, 16000])
  curve = 0.9 * (125.0 / np.minimum(steps, 12000)) ** 0.2
  check = convergence.check_convergence(steps, _seeds(curve, offsets))
  assert check.reference_step == 8000
  assert not check.converged


def test_the_reference_is_the_nearest_step_at_or_below_half():
  """Last step 100, half 50 not measured: the reference is 30 (not 70, nearer but above)."""
  steps = [10, 30, 70, 100]
  values = np.array([[0.9, 0.8, 0.505, 0.5], [0.9, 0.8, 0.505, 0.5]])
  check = convergence.check_convergence(steps, values)
  assert check.reference_step == 30
  assert check.change == pytest.approx(0.3)
  assert not check.converged
  # Exactly half measured: that point is the reference.
  check = convergence.check_convergence([10, 50, 70, 100], values)
  assert check.reference_step == 50


def test_a_change_equal_to_the_threshold_is_not_converged():
  values = np.array([[0.5, 0.75], [0.5, 0.75]])  # Exact in binary: change 0.25, SE 0.
  assert not convergence.check_convergence([1, 2], values, min_change=0.25).converged
  assert convergence.check_convergence([1, 2], values, min_change=0.2500001).converged


def test_one_seed_falls_back_on_the_floor():
  """With one seed the standard error is undefined (NaN); the threshold is the 0.01 floor."""
  check = convergence.check_convergence([100, 200], [[0.300, 0.305]])
  assert math.isnan(check.standard_error)
  assert check.threshold == convergence.MIN_CHANGE
  assert check.converged
  assert not convergence.check_convergence([100, 200], [[0.300, 0.32]]).converged


def test_a_seed_not_measured_is_left_out():
  """A NaN at the last point: mean and standard error of the other seeds."""
  values = np.array([[0.3, 0.3], [0.3, np.nan], [0.3, 0.3]])
  check = convergence.check_convergence([5, 10], values)
  assert check.last_mean == pytest.approx(0.3)
  assert check.standard_error == pytest.approx(0.0)
  with pytest.raises(ValueError, match="No seed has a finite value at step 10"):
    convergence.check_convergence([5, 10], [[0.3, np.nan]])


@pytest.mark.parametrize(
  "steps,values,message",
  [
    ([100], [[0.3]], "at least 2 measured steps"),
    ([], np.zeros((3, 0)), "at least 2 measured steps"),
    ([100, 100], [[0.3, 0.3]], "strictly increasing"),
    ([0, 10], [[0.3, 0.3]], "strictly increasing and >= 1"),
    ([10, 20], [0.3, 0.3], r"must be \[seeds, 2 steps\]"),
    ([60, 100], [[0.3, 0.3]], "No measured step is at or below half the last step 100"),
  ],
)
def test_curves_the_rule_cannot_judge_are_refused(steps, values, message):
  with pytest.raises(ValueError, match=message) as error:
    convergence.check_convergence(steps, values)
  assert "\n" not in str(error.value)


def test_log_spaced_steps():
  steps = convergence.log_spaced_steps(20000, 10, first=10)
  assert (steps[0], steps[-1], len(steps)) == (10, 20000, 10)
  ratios = steps[1:] / steps[:-1]
  np.testing.assert_allclose(ratios, 2000 ** (1 / 9), rtol=0.02)
  # Where rounding meets, steps are nudged apart (and the cap stays the last).
  np.testing.assert_array_equal(convergence.log_spaced_steps(8, 8, first=1), np.arange(1, 9))
  steps = convergence.log_spaced_steps(12, 9, first=1)
  assert steps[0] == 1 and steps[-1] == 12 and np.all(np.diff(steps) >= 1) and len(steps) == 9


@pytest.mark.parametrize(
  "cap,num_points,first,message",
  [
    (1000, 7, 1, "at least 8 points"),
    (1000, 8, 0, "must be >= 1"),
    (7, 8, 1, r"\[1, 7\] holds fewer than 8 distinct steps"),
  ],
)
def test_log_spaced_steps_refuses(cap, num_points, first, message):
  with pytest.raises(ValueError, match=message):
    convergence.log_spaced_steps(cap, num_points, first)


def test_next_budget_doubles_up_to_the_cap():
  budgets, trained = [], 1000
  while (trained := convergence.next_budget(trained, False, 10000)) is not None:
    budgets.append(trained)
  assert budgets == [2000, 4000, 8000, 10000]
  assert convergence.next_budget(4000, True, 10000) is None  # Converged: done.
  assert convergence.next_budget(10000, False, 10000) is None  # At the cap: done, unconverged.
  with pytest.raises(ValueError, match="must be >= 1"):
    convergence.next_budget(0, False, 10)


def test_the_rule_needs_no_jax():
  code = (
    "import sys; import aigc_jax.hallucination_benchmark.convergence; "
    "assert 'jax' not in sys.modules, 'convergence imported jax'"
  )
  subprocess.run([sys.executable, "-c", code], check=True)
