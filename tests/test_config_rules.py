"""Config values refused before any work, and the rules of a resume with a changed config."""

import functools
import json
import os
import subprocess
import sys

import pytest

from aigc_jax import config_rules, training
from aigc_jax.errors import ConfigError
from aigc_jax.training import optimizers
from tests.training import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _set(config, key, value):
  *parents, leaf = key.split(".")
  node = config
  for part in parents:
    node = node[part]
  with node.ignore_type():
    node[leaf] = value


# Every value the issue lists (each ran to exit 0 or crashed), with the range the message names.
@pytest.mark.parametrize(
  "key,value,allowed",
  [
    ("train.num_steps", 0, "an integer >= 1"),
    ("train.num_steps", -5, "an integer >= 1"),
    ("optimizer.learning_rate", 0.0, "a finite number > 0"),
    ("optimizer.learning_rate", -1e-3, "a finite number > 0"),
    ("optimizer.learning_rate", float("nan"), "a finite number > 0"),
    ("optimizer.learning_rate", float("inf"), "a finite number > 0"),
    ("model.beta", -0.5, "a finite number >= 0"),
    ("model.latent_dim", 0, "an integer >= 1"),
    ("checkpoint.keep_last", 0, "an integer >= 1"),
    ("train.log_every", -1, "an integer >= 0"),
    ("train.eval_every", -1, "an integer >= 0"),
    ("checkpoint.save_every", -1, "an integer >= 0"),
    ("checkpoint.best_mode", "minimum", "one of min, max"),
    ("train.num_samples", 0, "an integer >= 1"),
    ("train.eval_batch_size", 0, "an integer >= 1"),
    ("dataset.data_dir", "/nonexistent-aigc-jax/tfds", "an existing directory"),
  ],
)
def test_bad_value_is_refused_before_any_work(tmp_path, key, value, allowed):
  config = helpers.tiny_config("vae")
  _set(config, key, value)
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError) as info:
    training.train_and_evaluate(config, str(workdir))
  message = str(info.value)
  assert "\n" not in message
  assert f"{key} is {value!r} (allowed: {allowed}" in message, message
  assert not workdir.exists()  # Refused before anything was written...
  assert not os.path.exists("/nonexistent-aigc-jax")  # ...or created.


def test_every_bad_value_is_named_in_one_line():
  config = helpers.tiny_config("vae")
  config.train.num_steps = 0
  config.model.beta = -1.0
  with pytest.raises(ConfigError) as info:
    config_rules.check_config(config)
  assert "train.num_steps is 0" in str(info.value) and "model.beta is -1.0" in str(info.value)


def test_batch_that_does_not_split_over_the_devices_is_refused_before_any_work(tmp_path):
  config = helpers.tiny_config("vae")
  config.train.eval_batch_size = 100  # 8 forced CPU devices.
  with pytest.raises(ConfigError, match=r"train.eval_batch_size is 100, .* a multiple of 8"):
    training.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_bad_value_on_the_command_line_exits_2_with_one_line(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--workdir",
      str(tmp_path / "run"),
      "--config.train.num_steps=0",
      "--config.optimizer.learning_rate=nan",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines() == [
    "error: Invalid config values: optimizer.learning_rate is nan (allowed: a finite number "
    "> 0); train.num_steps is 0 (allowed: an integer >= 1)."
  ]
  assert not (tmp_path / "run").exists()


# ------------------------------------------------------------- resume rules (no training)


def _saved(config):
  """A config as a checkpoint stores it: nested JSON."""
  return json.loads(config.to_json_best_effort())


# As the loop calls it: with training's learning-rate schedules.
_check_resume = functools.partial(
  config_rules.check_resume, learning_rate_schedule=optimizers.learning_rate_schedule
)


def test_resume_allows_longer_runs_and_logging_changes_and_records_them():
  saved = helpers.tiny_config("vae")
  config = helpers.tiny_config("vae")
  config.train.num_steps = 40
  config.train.log_every = 7
  config.checkpoint.keep_last = 5
  record = _check_resume(_saved(saved), config, step=4, where="W", allow_config_change=False)
  assert record == {
    "changes": {
      "checkpoint.keep_last": {"saved": 3, "new": 5},
      "train.log_every": {"saved": 50, "new": 7},
      "train.num_steps": {"saved": 4, "new": 40},
    },
    "forced": [],
  }


def test_resume_refuses_changes_to_what_is_trained_naming_saved_and_new_values():
  saved = helpers.tiny_config("vae")
  config = helpers.tiny_config("vae")
  config.model.beta = 2.0
  config.optimizer.learning_rate = 3e-4
  config.seed = 1
  with pytest.raises(ConfigError) as info:
    _check_resume(_saved(saved), config, step=4, where="W", allow_config_change=False)
  message = str(info.value)
  assert "\n" not in message and "--allow_config_change" in message
  assert "model.beta 1.0 -> 2.0, optimizer.learning_rate 0.001 -> 0.0003, seed 0 -> 1" in message
  record = _check_resume(_saved(saved), config, step=4, where="W", allow_config_change=True)
  assert record["forced"] == ["model.beta", "optimizer.learning_rate", "seed"]
  assert record["changes"]["model.beta"] == {"saved": 1.0, "new": 2.0}


def test_a_run_saved_before_a_key_was_added_resumes_when_it_keeps_the_keys_default():
  saved = _saved(helpers.tiny_config("vae"))
  for key in config_rules.ADDED_KEYS:
    section, name = key.split(".")
    del saved[section][name]
  config = helpers.tiny_config("vae")
  record = _check_resume(saved, config, step=4, where="W", allow_config_change=False)
  assert record == {"changes": {}, "forced": []}
  config.optimizer.decay_fraction = 0.5  # Another value than the old runs' is a change.
  with pytest.raises(ConfigError, match="optimizer.decay_fraction"):
    _check_resume(saved, config, step=4, where="W", allow_config_change=False)


def test_resume_cannot_shorten_a_run():
  config = helpers.tiny_config("vae")
  config.train.num_steps = 100
  with pytest.raises(
    ConfigError,
    match="train.num_steps is 100 but the checkpoint in W is at "
    "step 300; a run cannot be shortened",
  ):
    _check_resume(_saved(config), config, step=300, where="W", allow_config_change=True)


@pytest.mark.parametrize("schedule,refused", [("constant", False), ("warmup_cosine", True)])
def test_longer_run_is_refused_when_the_schedule_depends_on_its_length(schedule, refused):
  saved = helpers.tiny_config("vae")
  saved.optimizer.schedule = schedule
  saved.optimizer.warmup_steps = 2
  saved.train.num_steps = 10
  config = helpers.tiny_config("vae")
  config.optimizer.schedule = schedule
  config.optimizer.warmup_steps = 2
  config.train.num_steps = 20
  if not refused:
    _check_resume(_saved(saved), config, 10, "W", allow_config_change=False)
    return
  with pytest.raises(
    ConfigError,
    match=r"train.num_steps 10 -> 20 \(the learning-rate "
    r"schedule optimizer.schedule='warmup_cosine' depends on train.num_steps",
  ):
    _check_resume(_saved(saved), config, 10, "W", allow_config_change=False)
  record = _check_resume(_saved(saved), config, 10, "W", allow_config_change=True)
  assert record["forced"] == ["train.num_steps"]


@pytest.mark.parametrize(
  "key,saved_value,value",
  [
    ("model.family", "vae", "gan"),
    ("model.encoder.body", "mlp", "conv"),
    ("dataset.name", "digits28", "mnist"),
  ],
)
@pytest.mark.parametrize("allow_config_change", [False, True])
def test_a_resume_as_another_kind_of_run_is_refused_first_naming_both(
  key, saved_value, value, allow_config_change
):
  """Checked before the run's length (it used to say "cannot be shortened") and before the
  checkpoint's arrays (whose mismatch listed 60 parameter names)."""
  saved = helpers.tiny_config("vae")
  config = helpers.tiny_config("vae")
  _set(config, key, value)
  config.train.num_steps = 1  # Shorter than the checkpoint: reported only for the same run.
  with pytest.raises(ConfigError) as info:
    _check_resume(_saved(saved), config, step=4, where="W", allow_config_change=allow_config_change)
  message = str(info.value)
  assert "\n" not in message and "shortened" not in message
  assert message.startswith(
    "The checkpoint in W (step 4) is of a vae on digits28 run; this config trains a "
  )
  assert f'{key} "{saved_value}" -> "{value}"' in message
  assert "--fresh" in message


def test_missing_keys_names_whole_sections_once():
  reference = helpers.tiny_config("vae")
  config = helpers.tiny_config("vae")
  del config["train"]
  del config.model["latent_dim"]
  assert config_rules.missing_keys(config, reference) == ["model.latent_dim", "train"]
  assert config_rules.missing_keys(reference, reference) == []


def test_a_saved_config_json_reads_back_as_the_same_config():
  config = helpers.tiny_config("vae")
  restored = config_rules.config_from_json(json.loads(config.to_json_best_effort()))
  assert restored.to_dict() == config.to_dict()  # Tuples stay tuples, floats floats.
  assert isinstance(restored.model.encoder.widths, tuple)
