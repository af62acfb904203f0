"""The runner: the README's main job end to end, and one-line errors for bad input."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train(tmp_path, *args, data_dir=None):
  env = dict(os.environ, TFDS_DATA_DIR=str(data_dir or tmp_path / "tfds"))
  return subprocess.run(
      [sys.executable, "-m", "experiments.train", "--workdir", str(tmp_path / "run"), *args],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_readme_main_job_runs_end_to_end(tmp_path):
  """`python -m experiments.train --workdir runs/demo`, with a small step budget."""
  result = _train(tmp_path, "--config.train.num_steps=30", "--config.train.log_every=10")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Outputs in" in result.stdout and str(tmp_path / "run") in result.stdout
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert [r["step"] for r in rows if r["split"] == "train"] == [10, 20, 30]
  assert rows[-1]["split"] == "eval" and rows[-1]["loss"] > 0
  with open(tmp_path / "run" / "config.json") as f:
    config = json.load(f)
  assert config["dataset"]["name"] == "digits28" and config["model"]["family"] == "vae"
  assert sorted(os.listdir(tmp_path / "run" / "images")) == [
      "reconstructions_00000030.png", "samples_00000030.png"]


@pytest.mark.parametrize("override,expected", [
    ("--config.model.famly=vae", "Unknown config key 'famly' (did you mean 'family'?)"),
    ("--config.model.family=vea", "Unknown model family 'vea'; valid choices are: ae, classifier, gan, vae."),
    ("--config.dataset.name=mnsit", "Unknown dataset 'mnsit'; valid choices are: cifar10, "),
    ("--config.model.encoder.body=transformer", "Unknown model body 'transformer'"),
    ("--config.model.likelihood=poisson", "Unknown likelihood 'poisson'; valid choices are: "
     "bernoulli, gaussian."),
    ("--config.optimizer.name=adamm", "Unknown optimizer 'adamm'"),
    ("--config.train.parallel=pjit", "Unknown parallel mode 'pjit'; valid choices are: pmap, "
     "shard_map."),
])
def test_bad_names_and_keys_give_one_line_errors(tmp_path, override, expected):
  result = _train(tmp_path, override, "--config.train.num_steps=1")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith("error: "), result.stderr[-2000:]
  assert expected in lines[-1]
  assert "Traceback" not in result.stderr


def test_missing_config_file_is_one_line(tmp_path):
  result = _train(tmp_path, "--config", "experiments/configs/nope.py")
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  assert "Cannot load the config file" in result.stderr.strip().splitlines()[-1]
