"""Ctrl-C at any moment of the long-running commands other than `experiments.train` (whose own
tests are in test_train_cli.py): one line on stderr, exit 130 (nothing saved) or 75 (saved),
never a traceback and never a run that carries on.

A terminal's Ctrl-C goes to the whole process group, so each command runs in its own group
and the SIGINT is sent to the group, at moments that fall into the imports, jax's start-up and
the work itself.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Each far too long to finish in the test's time: an ignored Ctrl-C shows as a timeout.
COMMANDS = {
  "evaluate": [
    "-m",
    "experiments.evaluate",
    "--workdir",
    "{run}",
    "--data_dir",
    "{data}",
    "--num_samples",
    "5000000",
    "--eval_dir",
    "{tmp}/eval",
  ],
  "hallucination_benchmark": [
    "-m",
    "experiments.hallucination_benchmark",
    "--out",
    "{tmp}/hb",
    "--only",
    "gaussian_ring8/gan",
    "--steps",
    "1000000",
    "--seeds",
    "1",
  ],
}


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
  """A 2-step run of PacGAN's ring config (points: evaluating it needs no classifier)."""
  data = tmp_path_factory.mktemp("tfds")
  run = tmp_path_factory.mktemp("pacgan") / "run"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--config",
      "experiments/configs/pacgan_ring8.py:1",
      "--workdir",
      str(run),
      "--config.train.num_steps=2",
      "--config.train.batch_size=64",
      "--config.train.eval_batch_size=64",
      f"--config.dataset.data_dir={data}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return {"run": run, "data": data}


def _interrupted(tmp_path, args, delay_s, points_run):
  stderr_path = tmp_path / "stderr.txt"
  with open(stderr_path, "w") as stderr:
    args = [a.format(tmp=tmp_path, **points_run) for a in args]
    process = subprocess.Popen(
      [sys.executable, *args],
      cwd=REPO,
      stdout=subprocess.DEVNULL,
      stderr=stderr,
      start_new_session=True,
    )
  time.sleep(delay_s)
  os.killpg(process.pid, signal.SIGINT)
  try:
    code = process.wait(timeout=120)
  finally:
    if process.poll() is None:
      os.killpg(process.pid, signal.SIGKILL)
  text = stderr_path.read_text()
  lines = [l for l in re.split(r"[\r\n]", text) if l.strip() and "it/s" not in l]
  return code, text, lines


@pytest.mark.parametrize("delay_s", [0.3, 1.5, 5.0])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_ctrl_c_is_one_line_and_130_or_75(tmp_path, command, delay_s, points_run):
  code, text, lines = _interrupted(tmp_path, COMMANDS[command], delay_s, points_run)
  assert "Traceback" not in text and "Exception ignored" not in text, text[-3000:]
  assert code in (130, 75), (code, text[-3000:])
  assert len(lines) == 1 and lines[0].startswith("Interrupted by Ctrl-C"), lines
