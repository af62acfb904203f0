"""`python -m experiments.hallucination_benchmark --quick`, as CI runs it, on a configs folder
holding a variant written by this test: the files, their columns, the variant's row, and
properties that fail if the counting is wrong (one subprocess: about 65 CPU-seconds)."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from aigc_jax.data import gaussian_mixtures
from aigc_jax.evaluation import statistics
from aigc_jax.hallucination_benchmark import convergence

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CONFIGS = os.path.join(ROOT, "experiments", "configs")
ONLY = (
  "gaussian_ring8/ae",
  "gaussian_ring8/gan",
  "gaussian_ring8/gan_mine",
  "gaussian_ring8/gan_diffaug",
  "gaussian_ring8/diffusion",
  "simple_shapes/vae",
)
REQUIRED = (
  "dataset",
  "setting",
  "status",
  "knobs",
  "seeds",
  "config",
  "modes_captured",
  "high_quality_fraction",
  "reverse_kl",
  "support_hallucination_rate",
  "support_hallucination_rate_se",
  "support_hallucination_rate_ci_low",
  "support_hallucination_rate_ci_high",
  "reconstruction_hallucination_rate",
  "manifold_hallucination_rate_k3_test",
  "manifold_hallucination_rate_k3_test_floor",
  "manifold_hallucination_rate",
  "manifold_hallucination_rate_floor",
  "topological_hallucination_rate_test",
  "unrecognisable_rate",
  "unrecognisable_rate_floor",
  "reconstruction_class_flip_rate",
  "filter_realism_removed_at_96",
  "filter_confidence_removed_at_96",
  "filter_discriminator_removed_at_96",
  "filter_trajectory_variance_removed_at_96",
  "invalid_mode_interpolation_fraction",
  "invalid_rendering_artifact_fraction",
  "invalid_mixed_fraction",
)
# A variant registered here, in a configs folder of the test's own: one file, no edit of
# the benchmark.
MY_VARIANT = '''
from experiments.configs import gan_digits

def get_config():
  config = gan_digits.get_config()
  config.model.gan.loss = "hinge"
  config.model.latent_dim = 64  # A network size: the ring's base keeps its own.
  return config
'''


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("hallucination_quick")
  configs = out / "configs"
  configs.mkdir()
  for name in ("ae_digits.py", "vae_digits.py", "gan_digits.py", "gan_diffaug_digits.py"):
    shutil.copy(os.path.join(CONFIGS, name), configs / name)
  (configs / "gan_mine_digits.py").write_text(textwrap.dedent(MY_VARIANT))
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")  # One device: the CLI's default.
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.hallucination_benchmark",
      "--out",
      str(out / "run"),
      "--quick",
      "--configs_dir",
      str(configs),
      "--only",
      ",".join(ONLY),
      "--data_dir",
      str(out / "tfds"),
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  run = out / "run"
  with open(run / "results.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  with open(run / "calibration.csv", encoding="utf-8") as f:
    calibration = list(csv.DictReader(f))
  return run, rows, calibration, result.stderr


def _row(rows, dataset, setting):
  return next(r for r in rows if r["dataset"] == dataset and r["setting"] == setting)


def test_files_columns_and_the_registered_variant(quick_run):
  run, rows, calibration, _ = quick_run
  for name in (
    "results.csv",
    "results.md",
    "results.json",
    "calibration.csv",
    "filtering.csv",
    "figures/samples_gaussian_ring8.png",
    "figures/samples_simple_shapes.png",
    "figures/calibration.png",
    "figures/filtering.png",
    "figures/learning_curves.png",
  ):
    assert os.path.getsize(run / name) > 0, name
  assert set(REQUIRED) <= set(rows[0])
  assert {r["setting"] for r in rows if r["dataset"] == "gaussian_ring8"} == {
    "real_data",
    "ae",
    "ae+gmm10",
    "ae+gmm300",
    "gan",
    "gan_mine",
    "gan_diffaug",
    "diffusion",
  }
  assert {r["setting"] for r in rows if r["dataset"] == "simple_shapes"} == {
    "real_data",
    "vae",
    "vae+gmm10",
    "vae+gmm300",
  }
  assert _row(rows, "simple_shapes", "vae+gmm10")["family"] == "vae"
  assert {r["setting"] for r in calibration} >= {"vae", "vae+gmm10", "vae+gmm300"}
  mine = _row(rows, "gaussian_ring8", "gan_mine")
  assert mine["status"] == "ok" and json.loads(mine["knobs"]) == {"model.gan.loss": "hinge"}
  config = json.loads(mine["config"])
  assert config["model"]["gan"]["loss"] == "hinge" and config["model"]["latent_dim"] == 2
  assert config["dataset"]["name"] == "gaussian_ring8" and mine["seeds"] == "0 1"
  assert mine["support_hallucination_rate"] != ""
  assert set(calibration[0]) == {
    "dataset",
    "setting",
    "family",
    "seed",
    "step",
    "target",
    "exact",
    "exact_ci_low",
    "exact_ci_high",
    "estimator",
    "estimate",
    "ci_low",
    "ci_high",
    "n",
    "floor",
  }
  results = json.loads((run / "results.json").read_text())
  assert results["calibration"] and results["default_estimator"]
  assert "| gan_mine |" in (run / "results.md").read_text()


def test_exact_rate_equals_a_recount_of_the_saved_samples(quick_run):
  """Seed 0's final samples (of the GANs, and of the AE's latent GMM), recounted in numpy float64 from the ring's definition (8 modes
  on the unit circle, std 0.01, valid within 3 std), against the rate the run saved; and the
  table's mean is the mean over seeds of the saved per-seed rates."""
  run, rows, _, _ = quick_run
  for name in ("gan", "gan_mine", "diffusion", "ae+gmm10", "ae+gmm300"):
    with np.load(run / "settings" / f"gaussian_ring8__{name}.npz") as f:
      samples, valid = f["samples"].astype(np.float64), f["valid"]
    angles = 2 * np.pi * np.arange(8) / 8
    modes = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    distance = np.linalg.norm(samples[:, None] - modes[None], axis=-1).min(axis=1)
    recount = int(np.sum(~(distance <= 3 * 0.01)))
    setting, _, components = name.partition("+gmm")  # The AE's json holds every group.
    group = f"generation_latent_gmm{components}" if components else "generation"
    record = json.loads((run / "settings" / f"gaussian_ring8__{setting}.json").read_text())
    per_seed = [
      {"generation": m[group]}
      for m in record["checkpoints"][str(max(map(int, record["checkpoints"])))]
    ]
    seed0 = per_seed[0]["generation"]["exact"]["support_hallucination_rate"]
    assert seed0["count"] == recount == int(np.sum(~valid)) and seed0["n"] == len(samples)
    row = _row(rows, "gaussian_ring8", name)
    mean = np.mean(
      [m["generation"]["exact"]["support_hallucination_rate"]["rate"] for m in per_seed]
    )
    assert float(row["support_hallucination_rate"]) == pytest.approx(mean, abs=1e-9)
    assert float(row["high_quality_fraction"]) == pytest.approx(1.0 - mean, abs=1e-6)


def test_real_data_rows_measure_the_known_floors(quick_run):
  _, rows, _, _ = quick_run
  ring = _row(rows, "gaussian_ring8", "real_data")
  floor = 1.0 - gaussian_mixtures.TRUE_MIXTURE_VALID_FRACTION  # 0.0111: P(chi2_2 >= 9).
  assert float(ring["support_hallucination_rate_ci_low"]) <= floor
  assert floor <= float(ring["support_hallucination_rate_ci_high"])
  assert float(ring["modes_captured"]) == 8
  shapes = _row(rows, "simple_shapes", "real_data")
  assert float(shapes["support_hallucination_rate"]) == 0.0
  assert float(shapes["reconstruction_hallucination_rate"]) == 0.0
  # Real data treated as a model: each estimate IS its floor.
  for name in shapes:
    if name.endswith("_floor") and shapes[name]:
      assert float(shapes[name]) == pytest.approx(float(shapes[name[: -len("_floor")]]))


def test_rates_inside_intervals_floors_beside_estimates_and_na_rows(quick_run):
  _, rows, calibration, _ = quick_run
  for row in rows:
    if row["status"] != "ok":
      continue
    for name in ("support_hallucination_rate", "reconstruction_hallucination_rate"):
      if row.get(name):
        assert float(row[f"{name}_ci_low"]) <= float(row[name]) <= float(row[f"{name}_ci_high"])
    for name in row:
      if (
        f"{name}_ci_low" in row
        and row[name]
        and name not in ("support_hallucination_rate", "reconstruction_hallucination_rate")
      ):
        assert row[f"{name}_floor"] != "", (row["setting"], name)
  for r in calibration:
    assert float(r["ci_low"]) <= float(r["estimate"]) <= float(r["ci_high"])
    assert float(r["exact_ci_low"]) <= float(r["exact"]) <= float(r["exact_ci_high"])
  diffaug = _row(rows, "gaussian_ring8", "gan_diffaug")
  assert diffaug["status"].startswith("n/a: DiffAugment works on images")
  ae = _row(rows, "gaussian_ring8", "ae")
  assert ae["support_hallucination_rate"] == "" and ae["reconstruction_hallucination_rate"] != ""
  vae = _row(rows, "simple_shapes", "vae")
  assert vae["support_hallucination_rate"] != "" and vae["reconstruction_class_flip_rate"] != ""
  # Why the VAE's samples are invalid: the kinds are exclusive and add up to the invalid
  # samples, which are the pooled support rate's count.
  kinds = ("mode_interpolation", "rendering_artifact", "mixed")
  invalid = int(vae["invalid_count"])
  assert sum(int(vae[f"invalid_{k}_count"]) for k in kinds) == invalid
  assert invalid == round(float(vae["support_hallucination_rate"]) * 2 * 300)
  diffusion = _row(rows, "gaussian_ring8", "diffusion")
  assert diffusion["family"] == "diffusion" and diffusion["status"] == "ok"


def test_console_holds_no_library_logs(quick_run):
  """absl/orbax INFO and WARNING lines ("I1125 15:20:44.098 ...") stay out of a run's stderr."""
  *_, stderr = quick_run
  library_lines = [line for line in stderr.splitlines() if re.match(r"[IWE]\d{4} ", line)]
  assert not library_lines, library_lines[:5]


def test_convergence_and_delta_vs_family_columns_recompute_from_the_saved_records(quick_run):
  """The rule and Welch's interval, recomputed from the per-seed rates the run saved."""
  run, rows, _, _ = quick_run
  name = "support_hallucination_rate"

  def per_seed(setting, step=None):
    record = json.loads((run / "settings" / f"gaussian_ring8__{setting}.json").read_text())
    checkpoints = record["checkpoints"]
    steps = sorted(map(int, checkpoints))
    curve = np.array(
      [[m["generation"]["exact"][name]["rate"] for m in checkpoints[str(s)]] for s in steps]
    ).T
    return steps, curve

  for setting in ("gan", "gan_mine", "diffusion"):
    steps, curve = per_seed(setting)
    check = convergence.check_convergence(steps, curve)
    row = _row(rows, "gaussian_ring8", setting)
    assert row["converged"] == ("yes" if check.converged else "no")
    assert float(row["last_doubling_change"]) == pytest.approx(
      check.last_mean - check.reference_mean
    )
  _, mine = per_seed("gan_mine")
  _, gan = per_seed("gan")
  interval = statistics.welch_difference_interval(mine[:, -1], gan[:, -1])
  row = _row(rows, "gaussian_ring8", "gan_mine")
  assert float(row[f"{name}_delta_vs_family"]) == pytest.approx(interval.difference)
  assert float(row[f"{name}_delta_ci_low"]) == pytest.approx(interval.low)
  assert float(row[f"{name}_delta_ci_high"]) == pytest.approx(interval.high)
  assert row[f"{name}_delta_verdict"] == statistics.difference_verdict(interval)
  assert _row(rows, "gaussian_ring8", "gan")[f"{name}_delta_verdict"] == ""  # The base row.
  # A latent GMM row of the AE: the AE only reconstructs, so no support rate to compare with.
  ae_gmm = _row(rows, "gaussian_ring8", "ae+gmm10")
  assert ae_gmm[f"{name}_delta_verdict"] == ""
  assert "exact rate - family's [95% CI]" in (run / "results.md").read_text()
