"""The runner: the README's main job end to end, a quiet console, and one-line errors (exit 2)
for bad input."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from aigc_jax.data import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(name="digits_tfds")
def _digits_tfds(tmp_path_factory):
  """A TFDS_DATA_DIR shared by this module's runs: digits28 is prepared by the first only."""
  return tmp_path_factory.getbasetemp() / "digits_tfds"


def _train(tmp_path, *args, data_dir=None):
  env = dict(os.environ, TFDS_DATA_DIR=str(data_dir or tmp_path / "tfds"))
  return subprocess.run(
    [sys.executable, "-m", "experiments.train", "--workdir", str(tmp_path / "run"), *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )


def test_readme_main_job_runs_end_to_end(tmp_path):
  """`python -m experiments.train --workdir runs/demo`, with a small step budget."""
  result = _train(tmp_path, "--config.train.num_steps=30", "--config.train.log_every=10")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Outputs in" in result.stdout and str(tmp_path / "run") in result.stdout
  # The console: the progress bar and nothing else (no library INFO logs) on stderr...
  # The first use of the dataset prepares it: one line of ours, none of tfds's banners,
  # progress bars or warnings.
  progress = re.compile(r"^(vae on digits28: .*|\s*)$")
  others = [l for l in re.split(r"[\r\n]", result.stderr) if not progress.match(l)]
  assert others == [
    f"Preparing digits/28x28 in {tmp_path / 'tfds'} (first use; generated "
    "locally, nothing is downloaded)."
  ], others[:5]
  assert "Downloading" not in result.stdout
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  # ...and a summary with the final train and eval metrics on stdout.
  final = {
    split: {k: v for k, v in rows[-i].items() if k not in ("step", "split")}
    for i, split in ((1, "eval"), (2, "train"))
  }
  lines = result.stdout.splitlines()
  assert "Finished vae on digits28: step 30 (" in lines[-4]
  for line, split in ((lines[-3], "train"), (lines[-2], "eval")):
    shown = dict(pair.rsplit(" ", 1) for pair in line.split(":", 1)[1].strip().split(", "))
    assert set(shown) == set(final[split]) - {"samples_per_second"}
    for name, value in shown.items():
      assert float(value) == pytest.approx(final[split][name], rel=1e-3)
  assert [r["step"] for r in rows if r["split"] == "train"] == [10, 20, 30]
  assert rows[-1]["split"] == "eval" and rows[-1]["loss"] > 0
  with open(tmp_path / "run" / "config.json") as f:
    config = json.load(f)
  assert config["dataset"]["name"] == "digits28" and config["model"]["family"] == "vae"
  assert sorted(os.listdir(tmp_path / "run" / "images")) == [
    "reconstructions_00000030.png",
    "samples_00000030.png",
  ]


@pytest.mark.parametrize(
  "override,expected",
  [
    ("--config.model.famly=vae", "Unknown config key 'famly' (did you mean 'family'?)"),
    (
      "--config.model.family=vea",
      "Unknown model family 'vea'; valid choices are: ae, classifier, diffusion, gan, vae.",
    ),
    ("--config.dataset.name=mnsit", "Unknown dataset 'mnsit'; valid choices are: cifar10, "),
    ("--config.model.encoder.body=transformer", "Unknown model body 'transformer'"),
    (
      "--config.model.likelihood=poisson",
      "Unknown likelihood 'poisson'; valid choices are: bernoulli, gaussian.",
    ),
    ("--config.optimizer.name=adamm", "Unknown optimizer 'adamm'"),
    (
      "--config.train.parallel=pjit",
      "Unknown parallel mode 'pjit'; valid choices are: auto, pmap, shard_map.",
    ),
  ],
)
def test_bad_names_and_keys_give_one_line_errors(tmp_path, override, expected):
  result = _train(tmp_path, override, "--config.train.num_steps=1")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith("error: "), result.stderr[-2000:]
  assert expected in lines[-1]
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
  "args,expected",
  [
    (
      ["--config", "experiments/configs/nope.py"],
      "error: The config file experiments/configs/nope.py does not exist; pass "
      "experiments/configs/<name>.py with <name> one of: ae_digits, ",
    ),
    (
      ["--config", "experiments/configs/vae_digit.py", "--config.train.num_steps=1"],
      "error: The config file experiments/configs/vae_digit.py does not exist; ",
    ),
    (
      ["--config", "experiments/configs", "--config.train.num_steps=1"],
      "error: --config experiments/configs is a directory, not a config file; ",
    ),
    (["--config=", "--config.train.num_steps=1"], "error: --config is empty; "),
    (
      ["--config", "{no_get_config}", "--config.train.num_steps=1"],
      "error: The config file {no_get_config} has no get_config() function; ",
    ),
    (
      ["--workdir=", "--config.train.num_steps=1"],
      "error: --workdir is empty; pass a directory for the outputs",
    ),
    (["extra_argument"], "error: Unexpected arguments: extra_argument "),
    (
      ["--num_processes=2", "--process_id=2", "--coordinator_address=localhost:1234"],
      "error: --process_id is 2 but --num_processes is 2; process ids run from 0 to "
      "num_processes - 1.",
    ),
  ],
)
def test_bad_command_lines_are_one_line_and_exit_2(tmp_path, args, expected):
  no_get_config = tmp_path / "no_get_config.py"
  no_get_config.write_text("def get_conf():\n  return None\n")
  args = [a.replace("{no_get_config}", str(no_get_config)) for a in args]
  result = _train(tmp_path, *args)
  assert result.returncode == 2, result.stderr[-3000:]
  (line,) = result.stderr.strip().splitlines()
  assert line.startswith(expected.replace("{no_get_config}", str(no_get_config))), line


def test_unprepared_catalog_dataset_names_the_real_flag(tmp_path):
  class OfflineBuilder:
    name = "mnist"

    def download_and_prepare(self, **kwargs):
      raise ConnectionError("no network")

  with pytest.raises(pipeline.DatasetUnavailableError) as info:
    pipeline._prepare_catalog(OfflineBuilder(), "mnist", str(tmp_path))
  message = str(info.value)
  assert "pass that directory as --config.dataset.data_dir (or --data_dir to " in message
  assert "--config.data_dir" not in message


# ---- Ctrl-C at any moment: one line, and 130 (nothing saved) or 75 (saved) ----

_STEP_DONE = re.compile(r"\| *[1-9]\d*/\d+ ")  # The progress bar after a finished step.


def _start_training(tmp_path, data_dir, stderr_path):
  """A run far too long to finish, in its own process group (as a terminal's Ctrl-C sees it)."""
  env = dict(os.environ, TFDS_DATA_DIR=str(data_dir))
  with open(stderr_path, "w") as stderr:
    return subprocess.Popen(
      [
        sys.executable,
        "-m",
        "experiments.train",
        "--workdir",
        str(tmp_path / "run"),
        "--config.train.num_steps=100000",
        "--config.train.eval_every=0",
        "--config.train.sample_every=0",
      ],
      cwd=REPO,
      env=env,
      stdout=subprocess.DEVNULL,
      stderr=stderr,
      text=True,
      start_new_session=True,
    )


def _interrupt(process, stderr_path):
  """SIGINT to the process group; (exit code, stderr lines other than progress bars)."""
  os.killpg(process.pid, signal.SIGINT)
  try:
    code = process.wait(timeout=120)  # An ignored Ctrl-C would train the 100,000 steps.
  finally:
    if process.poll() is None:
      os.killpg(process.pid, signal.SIGKILL)
  with open(stderr_path) as f:
    text = f.read()
  progress = re.compile(r"^(vae on digits28: .*|\s*|Preparing digits/28x28 in .*)$")
  return code, text, [l for l in re.split(r"[\r\n]", text) if not progress.match(l)]


@pytest.mark.parametrize("delay_s", [0.3, 1.0, 2.0])
def test_early_ctrl_c_is_one_line_and_130_or_75(digits_tfds, tmp_path, delay_s):
  """Start-up (imports, jax, data, compilation): a KeyboardInterrupt raised there used to be
  swallowed by a jax callback (the run trained on, exit 0) or end in a traceback."""
  stderr_path = tmp_path / "stderr.txt"
  process = _start_training(tmp_path, digits_tfds, stderr_path)
  time.sleep(delay_s)
  code, text, lines = _interrupt(process, stderr_path)
  assert "Traceback" not in text and "Exception ignored" not in text, text[-3000:]
  if code == 130:
    assert lines == ["Interrupted by Ctrl-C before training started; nothing was saved."]
  else:
    assert code == 75, text[-3000:]
    (line,) = lines
    assert line.startswith("SIGINT received: saved the checkpoint of step "), line


def test_ctrl_c_while_training_saves_and_exits_75(digits_tfds, tmp_path):
  stderr_path = tmp_path / "stderr.txt"
  process = _start_training(tmp_path, digits_tfds, stderr_path)
  deadline = time.monotonic() + 120
  while not _STEP_DONE.search(stderr_path.read_text()) and time.monotonic() < deadline:
    time.sleep(0.1)
  code, text, lines = _interrupt(process, stderr_path)
  assert code == 75, text[-3000:]
  (line,) = lines
  step = int(re.match(r"SIGINT received: saved the checkpoint of step (\d+) in ", line).group(1))
  assert os.path.isdir(tmp_path / "run" / "checkpoints" / str(step))


def test_a_second_ctrl_c_during_a_long_start_up_quits_at_once():
  """The first Ctrl-C is only recorded, to be acted on where stopping is safe; a user who
  cannot wait (a dataset being prepared) presses it again."""
  script = (
    "import os, signal, time\n"
    "from experiments import signals\n"
    "signals.record()\n"
    "os.kill(os.getpid(), signal.SIGINT)\n"
    "assert signals.pending() == 'SIGINT'\n"
    "os.kill(os.getpid(), signal.SIGINT)\n"
    "time.sleep(30)\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
  )
  assert result.returncode == 130
  assert result.stderr.splitlines() == ["Interrupted by Ctrl-C during start-up; nothing was saved."]


def test_a_runs_saved_config_json_trains_the_same_config_with_overrides(tmp_path, digits_tfds):
  """`--config runs/x/config.json` (it was `NameError: name 'true' is not defined`)."""
  from aigc_jax.training import loop  # pylint: disable=import-outside-toplevel
  from experiments.configs import vae_digits  # pylint: disable=import-outside-toplevel

  original = vae_digits.get_config()
  original.train.num_steps = 1
  original.train.eval_every = original.train.sample_every = 0
  saved_run = tmp_path / "saved_run"
  saved_run.mkdir()
  loop.write_config(original, str(saved_run))  # As the earlier run wrote it.

  result = _train(
    tmp_path,
    "--config",
    str(saved_run / "config.json"),
    "--config.train.num_steps=2",
    "--config.model.encoder.widths=(16,)",
    data_dir=digits_tfds,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with open(saved_run / "config.json") as f:
    expected = json.load(f)
  expected["train"]["num_steps"] = 2
  expected["model"]["encoder"]["widths"] = [16]
  with open(tmp_path / "run" / "config.json") as f:
    assert json.load(f) == expected
