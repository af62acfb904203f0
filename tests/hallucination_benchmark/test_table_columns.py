"""The tables' convergence and "delta vs family" columns on planted records, against values
computed here by hand (and scipy's Welch interval): flat, still falling and noisy curves;
variants better, worse and indistinguishable from their family."""

import numpy as np
import pytest
from scipy import stats

from aigc_jax.hallucination_benchmark import tables


def _record(curve, group="generation", name="support_hallucination_rate"):
  """A setting record whose seed s has the exact rate curve[step][s] at each step."""
  return {
    "checkpoints": {
      str(step): [{group: {"exact": {name: {"rate": r}}}} for r in rates]
      for step, rates in curve.items()
    }
  }


STEPS = (10, 20, 40, 80, 160, 320, 640, 1280)


def _curve(final_rates, falling_by=0.0):
  """Each seed's rate falls linearly in log(step) by `falling_by` over the last doubling."""
  k = np.log2(np.asarray(STEPS) / STEPS[-1])  # 0 at the last step, -1 one doubling before.
  return {s: [r - falling_by * k[i] for r in final_rates] for i, s in enumerate(STEPS)}


def test_a_flat_curve_is_converged_and_a_falling_one_is_not():
  flat = tables.convergence_columns(_record(_curve([0.30, 0.31, 0.29])))
  assert flat["converged"] == "yes" and flat["convergence_reference_step"] == 640
  assert flat["last_doubling_change"] == pytest.approx(0.0, abs=1e-12)
  falling = tables.convergence_columns(_record(_curve([0.30, 0.31, 0.29], falling_by=0.05)))
  # Rate at 640 is 0.05 above the last one: change -0.05; threshold max(2 se, 0.01) = 0.02.
  assert falling["converged"] == "no"
  assert falling["last_doubling_change"] == pytest.approx(-0.05)
  assert falling["convergence_threshold"] == pytest.approx(
    2 * np.std([0.3, 0.31, 0.29], ddof=1) / np.sqrt(3)
  )


def test_a_noisy_curve_converges_when_its_change_is_inside_two_standard_errors():
  # Seeds spread widely (se of the last mean 0.1): a 0.05 move over the last doubling is noise.
  finals = [0.2, 0.4, 0.6]
  record = _record(_curve(finals, falling_by=0.05))
  columns = tables.convergence_columns(record)
  se = np.std(finals, ddof=1) / np.sqrt(3)
  assert columns["convergence_threshold"] == pytest.approx(2 * se)
  assert columns["converged"] == "yes"


def test_checkpoints_that_cannot_tell_leave_the_column_empty():
  # 3 checkpoints in the last doubling only: nothing at or below half of 100.
  record = _record({60: [0.5, 0.5], 80: [0.4, 0.4], 100: [0.3, 0.3]})
  assert tables.convergence_columns(record)["converged"] == ""
  assert tables.convergence_columns({"checkpoints": {}})["converged"] == ""


def test_an_autoencoder_is_judged_on_its_reconstruction_rate():
  record = _record(
    _curve([0.1, 0.1]), group="reconstruction", name="reconstruction_hallucination_rate"
  )
  columns = tables.convergence_columns(record)
  assert columns["convergence_rate"] == "reconstruction_hallucination_rate"
  assert columns["converged"] == "yes"


def _final(rates):
  return _record({100: rates})


@pytest.mark.parametrize(
  "variant, verdict",
  [
    ([0.10, 0.12, 0.11, 0.09, 0.13], "better"),
    ([0.50, 0.52, 0.51, 0.49, 0.53], "worse"),
    ([0.25, 0.35, 0.30, 0.20, 0.40], "no measurable change"),
  ],
)
def test_delta_vs_family_is_welchs_interval_and_its_verdict(variant, verdict):
  family = [0.30, 0.32, 0.29, 0.31, 0.28]
  columns = tables.difference_columns(_final(variant), _final(family))
  name = "support_hallucination_rate"
  expected = stats.ttest_ind(variant, family, equal_var=False).confidence_interval(0.95)
  assert columns[f"{name}_delta_vs_family"] == pytest.approx(np.mean(variant) - np.mean(family))
  assert columns[f"{name}_delta_ci_low"] == pytest.approx(expected.low)
  assert columns[f"{name}_delta_ci_high"] == pytest.approx(expected.high)
  assert columns[f"{name}_delta_verdict"] == verdict
  assert "reconstruction_hallucination_rate_delta_verdict" not in columns  # Neither has it.


def test_one_seed_a_side_gives_no_verdict():
  columns = tables.difference_columns(_final([0.1]), _final([0.3, 0.31]))
  assert columns == {"support_hallucination_rate_delta_verdict": ""}


def test_the_markdown_cells_show_the_interval_and_the_change():
  row = {"converged": "no", "last_doubling_change": -0.021}
  assert tables._fmt_converged(row) == "no (-0.021)"
  row.update(
    tables.difference_columns(_final([0.10, 0.12, 0.11]), _final([0.30, 0.32, 0.29])),
    convergence_rate="support_hallucination_rate",
  )
  cell = tables._fmt_delta(row)
  assert cell.startswith("-0.193 [") and cell.endswith("] better")
