"""The extension path: a variant in a file of its own (tests/fixtures/my_variant.py, a Laplace
likelihood) is found by name through `config.model.imports` in fresh processes: it trains two
steps through `python -m experiments.train`, resumes exactly, and `experiments.evaluate`
reports on it."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from aigc_jax import data, inference, training
from aigc_jax.errors import ConfigError
from aigc_jax.training.family import get_family
from tests.fixtures import my_variant_config
from tests.training import classifier_run, helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join("tests", "fixtures", "my_variant_config.py")


def _run(module, *args):
  return subprocess.run(
    [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=600
  )


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_variant_in_its_own_file_trains_resumes_and_evaluates(tmp_path, tmp_path_factory):
  classifier = classifier_run.trained_digits_classifier(tmp_path_factory)
  data_dir, workdir = classifier["data_dir"], str(tmp_path / "run")
  train_args = ["--config", CONFIG, "--workdir", workdir, f"--config.dataset.data_dir={data_dir}"]

  first = _run("experiments.train", *train_args)
  assert first.returncode == 0, first.stderr[-3000:]
  assert [r["step"] for r in _rows(workdir)] == [1, 2, 2]
  resumed = _run("experiments.train", *train_args, "--config.train.num_steps=4")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resuming from step 2" in resumed.stderr
  rows = _rows(workdir)
  assert [(r["step"], r["split"]) for r in rows] == [
    (1, "train"),
    (2, "train"),
    (2, "eval"),
    (3, "train"),
    (4, "train"),
    (4, "eval"),
  ]

  # The same 4 steps without a stop, in this process: the resumed run continued exactly.
  config = my_variant_config.get_config()
  config.dataset.data_dir = data_dir
  config.train.num_steps = 4
  straight = training.train_and_evaluate(config, str(tmp_path / "straight"))
  straight_rows = _rows(str(tmp_path / "straight"))
  for row, straight_row in zip([r for r in rows if r["step"] > 2], straight_rows[2:]):
    np.testing.assert_allclose(row["loss"], straight_row["loss"], rtol=1e-6)
  _, family, state, step = inference.load_for_inference(workdir)
  assert step == 4
  assert helpers.max_abs_difference(state.params, straight["state"].params) < 1e-6

  # The loss is the variant's: Laplace -log p of the test split, recomputed in numpy.
  images, _ = data.load_split_images("digits28", "test", data_dir)
  outputs = np.asarray(state.apply_fn(state.variables(), images), np.float64)
  x = images.astype(np.float64)
  laplace_nll = np.sum(np.abs(x - outputs) / 0.1 + np.log(0.2), axis=(1, 2, 3))
  np.testing.assert_allclose(rows[-1]["loss"], laplace_nll.mean(), rtol=1e-4)

  evaluated = _run(
    "experiments.evaluate",
    "--workdir",
    workdir,
    "--classifier_workdir",
    classifier["workdir"],
    "--data_dir",
    data_dir,
    "--num_samples=100",
  )
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  (report_dir,) = os.listdir(os.path.join(workdir, "eval", "step_4"))  # One per settings.
  with open(os.path.join(workdir, "eval", "step_4", report_dir, "eval.json")) as f:
    report = json.load(f)
  assert report["step"] == 4 and report["family"] == "ae"
  recon = np.clip(outputs, 0, 1)
  np.testing.assert_allclose(
    report["fidelity"]["mse"]["mean"], np.mean((recon - x) ** 2), rtol=1e-4
  )
  assert family.reconstruct is not None


def test_a_module_that_cannot_be_imported_is_a_one_line_error():
  config = my_variant_config.get_config()
  config.model.imports = ("tests.fixtures.no_such_variant",)
  with pytest.raises(
    ConfigError,
    match=r"model.imports names 'tests.fixtures.no_such_variant', "
    "which cannot be imported",
  ):
    get_family(config, (28, 28, 1))


def _readme_variant() -> str:
  """The example module of docs/adding_a_variant.md, as a user copies it."""
  with open(os.path.join(REPO, "docs", "adding_a_variant.md"), encoding="utf-8") as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
  (block,) = [b for b in blocks if "@LIKELIHOODS.register(" in b]
  return block


def test_the_readme_variant_and_the_fixture_live_side_by_side(tmp_path):
  """A user's copy of the docs' example and this test's fixture in one process (the test
  suite trains every config, the user's too): no name clash; importing the user's file a
  second time under another module name is harmless."""
  (tmp_path / "my_project").mkdir()
  (tmp_path / "my_project" / "__init__.py").write_text("")
  (tmp_path / "my_project" / "laplace.py").write_text(_readme_variant())
  script = (
    "import sys\n"
    "sys.path[:0] = [sys.argv[1], sys.argv[1] + '/my_project']\n"
    "import my_project.laplace, laplace, tests.fixtures.my_variant\n"
    "from aigc_jax.models.likelihoods import LIKELIHOODS\n"
    "assert LIKELIHOODS.get('laplace') is laplace.laplace\n"
    "assert LIKELIHOODS.get('fixture_laplace') is tests.fixtures.my_variant.laplace\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", script, str(tmp_path)],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-3000:]


def test_a_variant_taking_a_built_in_name_is_one_line_and_exit_2(tmp_path):
  (tmp_path / "taken.py").write_text(
    "from aigc_jax.models.likelihoods import LIKELIHOODS\n\n"
    "@LIKELIHOODS.register('gaussian')\n"
    "def my_gaussian(scale):\n"
    "  raise AssertionError('never built')\n"
  )
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--config",
      CONFIG,
      "--workdir",
      str(tmp_path / "run"),
      "--config.model.imports=('taken',)",
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 2, result.stderr[-3000:]
  (line,) = result.stderr.strip().splitlines()
  assert line.startswith(
    "error: likelihood 'gaussian' is already registered by aigc_jax.models.likelihoods."
  ), line
  assert f"taken.my_gaussian ({tmp_path / 'taken.py'}) cannot take the name too" in line
  assert not os.path.exists(tmp_path / "run" / "checkpoints")
