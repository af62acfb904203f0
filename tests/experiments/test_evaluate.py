"""The evaluation runner on trained digits runs: what it writes agrees with direct computation."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from aigc_jax import checkpointing, data, training
from aigc_jax.errors import ConfigError
from aigc_jax.evaluation import report
from tests.training import classifier_run, helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_SAMPLES = 300


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
  return classifier_run.trained_digits_classifier(tmp_path_factory)


def _train(family, body, workdir, data_dir):
  config = helpers.tiny_config(family, body)
  config.dataset.data_dir = data_dir
  config.train.num_steps = 30
  config.train.eval_every = 0
  config.train.sample_every = 0
  training.train_and_evaluate(config, str(workdir))
  return str(workdir)


@pytest.mark.parametrize("family,body", [("vae", "mlp"), ("ae", "conv"), ("gan", "conv")])
def test_report_matches_direct_computation(tmp_path, classifier, family, body):
  workdir = _train(family, body, tmp_path / family, classifier["data_dir"])
  results = report.evaluate_run(workdir, classifier_workdir=classifier["workdir"],
                                num_samples=NUM_SAMPLES, data_dir=classifier["data_dir"])
  with open(os.path.join(results["output_dir"], "eval.json")) as f:
    on_disk = json.load(f)
  assert on_disk["step"] == 30 and on_disk["num_test_images"] == 300
  assert on_disk["classifier"]["test_accuracy"] > 0.9
  with open(os.path.join(results["output_dir"], "eval.md")) as f:
    table = f.read()

  _, fam, state, _ = checkpointing.load_for_inference(workdir)
  images, _ = data.load_split_images("digits28", "test", classifier["data_dir"])
  if fam.reconstruct is not None:
    recon = np.asarray(fam.reconstruct(state, images, None))
    direct_mse = np.mean((recon - images) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(on_disk["fidelity"]["mse"]["mean"], direct_mse.mean(), rtol=1e-4)
    assert 0 < on_disk["fidelity"]["ssim"]["mean"] <= 1
    assert on_disk["fidelity"]["ms_ssim"]["settings"] == {"filter_size": 7, "num_scales": 3}
    flip = on_disk["reconstruction"]["reconstruction_class_flip_rate"]
    assert flip["n"] == 300 and flip["ci_low"] <= flip["rate"] <= flip["ci_high"]
    assert "| mse |" in table and "| reconstruction_class_flip_rate |" in table
  else:
    assert "fidelity" not in on_disk
  if fam.generate is not None:
    generation = on_disk["generation"]
    manifold = generation["manifold_hallucination_rate"]
    assert manifold["n"] == NUM_SAMPLES == generation["num_samples"]
    assert manifold["count"] == round(manifold["rate"] * NUM_SAMPLES)
    # Outside the real manifold is exactly "not counted by precision".
    np.testing.assert_allclose(manifold["rate"], 1 - generation["precision"], atol=1e-6)
    assert manifold["ci_low"] <= manifold["rate"] <= manifold["ci_high"]
    assert generation["fid"] > 0 and 0 <= generation["coverage"] <= 1
    assert os.path.exists(os.path.join(results["output_dir"], "hallucinated.png"))
    assert "| manifold_hallucination_rate |" in table
  else:
    assert "generation" not in on_disk


def test_cli_prints_the_table(tmp_path, classifier):
  workdir = _train("vae", "mlp", tmp_path / "vae", classifier["data_dir"])
  result = subprocess.run(
      [sys.executable, "-m", "experiments.evaluate", "--workdir", workdir,
       "--classifier_workdir", classifier["workdir"], "--num_samples=200",
       "--data_dir", classifier["data_dir"]],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| manifold_hallucination_rate |" in result.stdout
  assert os.path.exists(os.path.join(workdir, "eval", "step_30", "eval.json"))


def test_missing_classifier_is_one_line(tmp_path, classifier):
  workdir = _train("vae", "mlp", tmp_path / "vae", classifier["data_dir"])
  with pytest.raises(ConfigError) as info:
    report.evaluate_run(workdir, classifier_workdir=str(tmp_path / "nothing"))
  message = str(info.value)
  assert "\n" not in message and "train the digits28 classifier first" in message


def test_ms_ssim_settings_fit_the_image():
  assert report.ms_ssim_settings(256, 256) == {"filter_size": 11, "num_scales": 5}
  assert report.ms_ssim_settings(28, 28) == {"filter_size": 7, "num_scales": 3}
  assert report.ms_ssim_settings(8, 8) == {"filter_size": 7, "num_scales": 1}
  assert report.ms_ssim_settings(32, 32) == {"filter_size": 7, "num_scales": 3}
