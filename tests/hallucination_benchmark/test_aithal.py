"""Aithal et al.'s toy protocol (`--protocol aithal`): its data, its counting rules and
filters on planted samples, and a tiny run through `run_plan` (saved, reused, refused)."""

import json
import os

import numpy as np
import pytest

from aigc_jax.errors import UserError
from aigc_jax.hallucination_benchmark import aithal, convergence
from experiments.configs import aithal_toy


@pytest.mark.parametrize("dataset", aithal.DATASETS)
def test_training_points_are_nested_balanced_draws_of_the_mixture(dataset):
  mixture = aithal.MIXTURES[dataset]
  points = aithal.training_points(dataset, 30_000)
  np.testing.assert_array_equal(aithal.training_points(dataset, 1_000), points[:1_000])
  modes = np.arange(len(points)) % mixture.num_modes  # Example i from mode i mod K.
  offsets = (points - mixture.means[modes]) / mixture.std
  n = len(points)
  assert np.all(np.abs(offsets.mean(axis=0)) < 4 / np.sqrt(n))  # Standard normal noise.
  assert np.all(np.abs(offsets.std(axis=0) - 1) < 4 / np.sqrt(2 * n))
  assert mixture.support_check(points).mean() > 0.97  # 3 standard deviations hold most.


def test_the_grid_is_the_authors_scaled_grid():
  grid = aithal.MIXTURES["grid25"]
  scale = np.sqrt(0.05**2 + 8)
  np.testing.assert_allclose(np.sort(np.unique(grid.means[:, 0])), np.arange(-4, 5, 2) / scale)
  assert grid.std == pytest.approx(0.05 / scale)
  assert aithal.MIXTURES["gaussian1d"].means[:, 0].tolist() == [1.0, 2.0, 3.0]


def test_between_modes_counts_only_the_invalid_samples_inside_the_modes_span():
  samples = np.array([[2.0], [1.5], [2.5], [0.5], [3.6], [1.1], [2.2]])
  # 2.0: a mode; 1.5, 2.5: between modes; 0.5, 3.6: outside the outer modes; 1.1: 2 std
  # from mode 1 (valid); 2.2: 4 std from mode 2, between modes.
  np.testing.assert_array_equal(
    aithal.between_modes("gaussian1d", samples), [False, True, True, False, False, False, True]
  )
  measured = aithal.measure_samples("gaussian1d", samples, None, samples)
  assert measured["support_hallucination_rate"]["count"] == 5
  assert measured["between_modes_rate"]["count"] == 3


def test_the_variance_filter_removes_samples_whose_prediction_swings_between_modes():
  rng = np.random.RandomState(0)
  valid = np.concatenate([rng.normal(m, 0.01, 90) for m in (1.0, 2.0, 3.0)])[:, None]
  between = rng.uniform(1.3, 1.7, 30)[:, None]
  samples = np.concatenate([valid, between])
  # The in-support samples' predictions settle; the hallucinations' swing between 1 and 2.
  x0_hats = np.repeat(samples[None], aithal.FILTER_STEPS, axis=0)
  x0_hats[:, 270:, 0] += np.where(np.arange(aithal.FILTER_STEPS) % 2, 0.4, -0.4)[:, None]
  x0_hats[:, :270] += rng.normal(0, 1e-3, (aithal.FILTER_STEPS, 270, 1))
  filters = aithal.measure_samples("gaussian1d", samples, x0_hats, valid)["filters"]
  assert filters["variance"]["removed_at_96"] == 1.0
  assert filters["variance"]["valid_kept_at_96"] >= 0.96


def test_checkpoints_double_up_to_the_cap():
  assert convergence.doubling_checkpoints(2_000) == (16, 31, 62, 125, 250, 500, 1_000, 2_000)
  assert convergence.doubling_checkpoints(4) == (1, 2, 4)


def _tiny_config(dataset):
  config = aithal_toy.get_config(dataset)
  config.model.diffusion.num_timesteps = 20
  config.model.diffusion.sampling_steps = 20
  config.model.diffusion.width = 8
  return config


def test_a_tiny_run_saves_each_unit_reuses_it_and_refuses_other_settings(tmp_path):
  out = str(tmp_path / "aithal")
  plan = aithal.make_plan(quick=True, steps=4, only=["gaussian1d"], sizes=[200], num_samples=60)
  plan = aithal.dataclasses.replace(plan, batch_size=32, sampling_steps=(10, 20))
  records = aithal.run_plan(plan, out, _tiny_config, log=lambda _: None)
  assert sorted(records) == ["aithal_sizes_gaussian1d_200", "aithal_steps_gaussian1d"]
  steps_unit = records["aithal_steps_gaussian1d"]
  assert [p["step"] for p in steps_unit["curve"]] == [1, 2, 4]
  assert [p["sampling_steps"] for p in steps_unit["sampling_steps_curve"]] == [10, 20]
  # The stored samples are seed 0's final ones: recounted, they give its rate.
  seed0 = steps_unit["curve"][-1]["per_seed"][0]["support_hallucination_rate"]
  stored = np.asarray(steps_unit["samples"], np.float64)
  assert seed0["n"] == 60 and len(stored) == 60
  assert int((~aithal.MIXTURES["gaussian1d"].support_check(stored)).sum()) == seed0["count"]

  logged = []
  again = aithal.run_plan(plan, out, _tiny_config, log=logged.append)  # Reused, not retrained.
  same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN too.
  assert same(again, records) and all("reused" in line for line in logged)
  paths = aithal.write_outputs(out)
  assert all(os.path.exists(p) for p in paths)
  with open(os.path.join(out, "results.json")) as f:
    rows = json.load(f)["rows"]
  assert [(r["dataset"], r["steps"], r["seeds"]) for r in rows] == [("gaussian1d", 4, 2)]

  other = aithal.dataclasses.replace(plan, seeds=3)
  with pytest.raises(UserError, match="seeds 2 -> 3"):
    aithal.run_plan(other, out, _tiny_config, log=lambda _: None)
  moved = aithal.run_plan(
    aithal.dataclasses.replace(other, sizes=()),
    out,
    _tiny_config,
    overwrite=True,
    log=lambda _: None,
  )
  assert moved["aithal_steps_gaussian1d"]["settings"]["seeds"] == 3
  assert os.path.isdir(os.path.join(out, "settings", "replaced"))
