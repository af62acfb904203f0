"""Multi-process runs on jax.distributed, with real processes on this machine (CPU, loopback).

Each run is two `python -m experiments.train` processes with two forced host devices each,
connected through a coordinator on a free local port; the reference is a single-process run
in this process (8 devices) with the same global batch and seed. The runs are shared between
the tests (module fixtures) to keep the file short:

  interrupted  2 processes, pmap: SIGTERM to both mid-run -> both save the same step, exit 75
  resumed      2 processes, jit + shard_map ("auto"): the same command again resumes, finishes
  reference    1 process, 8 devices, uninterrupted (in this process)
  contested    2 processes, running; a second 2-process run on its workdir; then one killed
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from aigc_jax import data, inference, training
from experiments.configs import vae_digits

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 60  # Long enough (seconds: a step is a cross-process all-reduce) for a signal.
EXTRA_STEPS = 4  # What the single-process run trains after restoring the 2-process run.
OVERRIDES = {
  "train.num_steps": NUM_STEPS,
  "train.batch_size": 16,
  "train.log_every": 2,
  "train.eval_every": NUM_STEPS,
  "train.sample_every": NUM_STEPS,
  "train.num_samples": 8,
  "checkpoint.save_every": NUM_STEPS,
}
TIMEOUT_S = 120  # Any one launch; a hang fails the test instead of the CI job.


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(workdir, data_dir, *args, parallel="auto", num_steps=NUM_STEPS):
  """Starts the two processes of one run; returns their Popen objects (process 0 first)."""
  port = _free_port()
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    JAX_PLATFORMS="cpu",
    TFDS_DATA_DIR=data_dir,
  )
  overrides = dict(OVERRIDES, **{"train.parallel": parallel, "train.num_steps": num_steps})
  return [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "experiments.train",
        f"--workdir={workdir}",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={i}",
        "--heartbeat_timeout=5",
        "--initialization_timeout=60",
        *[f"--config.{k}={v}" for k, v in overrides.items()],
        *args,
      ],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]


def _finish(processes, timeout=TIMEOUT_S):
  """Waits for every process; returns [(exit code, stdout, stderr)]; kills all on timeout."""
  deadline = time.monotonic() + timeout
  results = []
  try:
    for p in processes:
      out, err = p.communicate(timeout=max(deadline - time.monotonic(), 1))
      results.append((p.returncode, out, err))
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.communicate()
  return results


def _wait_for_training(workdir, processes, timeout=TIMEOUT_S, path="metrics.jsonl"):
  """Returns once the run logged its first training row (it is mid-run), or once `path` in
  the workdir is not empty."""
  path = os.path.join(workdir, path)
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if os.path.exists(path) and os.path.getsize(path) > 0:
      return
    if any(p.poll() is not None for p in processes):
      raise AssertionError(f"a process ended early: {_finish(processes)}")
    time.sleep(0.05)
  _finish(processes, timeout=1)
  raise AssertionError("the run never started training")


def _params(workdir, step=None):
  return inference.load_for_inference(str(workdir), step)[2].params


def _assert_close(a, b):
  diffs = jax.tree.leaves(jax.tree.map(lambda x, y: np.max(np.abs(np.asarray(x) - y)), a, b))
  assert max(diffs) < 1e-5, max(diffs)  # Summation order differs across processes.


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  data.num_examples("digits28", "train", path)  # Prepared once, before the processes race.
  return path


def _full_run_config(data_dir):
  """The test's VAE config for the whole run (NUM_STEPS + EXTRA_STEPS), data in `data_dir`."""
  config = vae_digits.get_config()
  for key, value in OVERRIDES.items():
    section, name = key.split(".")
    config[section][name] = value
  config.train.num_steps = NUM_STEPS + EXTRA_STEPS
  config.dataset.data_dir = data_dir
  return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
  """One process, 8 devices, uninterrupted, NUM_STEPS + EXTRA_STEPS steps (saves both)."""
  config = _full_run_config(data_dir)
  workdir = tmp_path_factory.mktemp("reference")
  training.train_and_evaluate(config, str(workdir))
  return workdir


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory, data_dir):
  """The 2-process run: pmap, SIGTERM to both mid-run; then resumed under "auto"."""
  workdir = str(tmp_path_factory.mktemp("two_processes"))
  processes = _launch(workdir, data_dir, parallel="pmap")
  _wait_for_training(workdir, processes)
  for p in processes:
    p.send_signal(signal.SIGTERM)
  interrupted = _finish(processes)
  resumed = _finish(_launch(workdir, data_dir, parallel="auto"))
  return workdir, interrupted, resumed


def test_sigterm_to_both_processes_saves_one_step_on_both_and_exits_75(interrupted_then_resumed):
  workdir, interrupted, _ = interrupted_then_resumed
  assert [code for code, _, _ in interrupted] == [75, 75], [e[-2000:] for _, _, e in interrupted]
  steps = [
    int(re.search(r"saved the checkpoint of step (\d+)", err).group(1)) for _, _, err in interrupted
  ]
  assert steps[0] == steps[1] and 0 < steps[0] < NUM_STEPS, steps
  saved = sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())
  assert steps[0] in saved
  for _, _, err in interrupted:
    assert "Traceback" not in err and "[Gloo]" not in err


def test_two_processes_resumed_equal_one_uninterrupted_process(interrupted_then_resumed, reference):
  """pmap trained the first part, jit + shard_map the rest; both feed the final params."""
  workdir, interrupted, resumed = interrupted_then_resumed
  assert [code for code, _, _ in resumed] == [0, 0], [e[-2000:] for _, _, e in resumed]
  step = re.search(r"saved the checkpoint of step (\d+)", interrupted[0][2]).group(1)
  assert f"Resuming from step {step} of" in resumed[0][2]
  _assert_close(_params(workdir, NUM_STEPS), _params(reference, NUM_STEPS))


def test_only_process_0_writes_logs_and_prints(interrupted_then_resumed):
  workdir, _, resumed = interrupted_then_resumed
  (_, out0, err0), (_, out1, err1) = resumed
  assert f"Finished vae on digits28: step {NUM_STEPS}" in out0 and "vae on digits28:" in err0
  assert out1 == "" and err1 == "", (out1[-500:], err1[-500:])  # No bar, summary or chatter.
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  train_steps = [r["step"] for r in rows if r["split"] == "train" and r["step"] <= NUM_STEPS]
  assert train_steps == list(range(2, NUM_STEPS + 1, 2))  # Once each: one writer.
  with open(os.path.join(workdir, "resumes.jsonl")) as f:
    assert len(f.readlines()) == 1


def test_two_process_checkpoint_continues_in_one_process(
  interrupted_then_resumed, reference, data_dir
):
  """Restore with other process and device counts (2 x 2 devices -> 1 x 8): state, key and
  data position all carry over, so the continued run equals the uninterrupted one."""
  workdir, _, _ = interrupted_then_resumed
  config = _full_run_config(data_dir)
  result = training.train_and_evaluate(config, workdir)
  assert result["step"] == NUM_STEPS + EXTRA_STEPS
  _assert_close(_params(workdir), _params(reference))


@pytest.fixture(scope="module")
def contested_then_killed(tmp_path_factory, data_dir):
  """A running 2-process run; a second 2-process run on its workdir; then its process 1 is
  killed (SIGKILL, no chance to say goodbye)."""
  workdir = str(tmp_path_factory.mktemp("contested"))
  first = _launch(workdir, data_dir, num_steps=10**6)
  try:
    _wait_for_training(workdir, first, path="run.lock")  # The holder's record is written.
    second = _finish(_launch(workdir, data_dir))
    _wait_for_training(workdir, first)
    first[1].kill()
    killed_at = time.monotonic()
    survivor = _finish(first[:1], timeout=60)[0]
    return second, survivor, time.monotonic() - killed_at
  finally:
    for p in first:
      if p.poll() is None:
        p.kill()


def test_a_second_run_is_refused_on_every_process(contested_then_killed):
  second, _, _ = contested_then_killed
  for code, _, err in second:
    assert code == 2, err[-2000:]
    assert re.fullmatch(
      r"error: The workdir \S+ is in use by another run \(host \S+, pid \d+, "
      r"started [^)]+\); wait for it to finish, stop it, or choose another "
      r"--workdir\.",
      err.strip(),
    ), err[-2000:]


def test_killing_one_process_stops_the_other_with_one_line(contested_then_killed):
  _, (code, _, err), seconds = contested_then_killed
  assert code == 69, err[-3000:]
  lines = [
    line
    for line in re.split(r"[\r\n]", err)  # Less the progress bar.
    if line.strip() and not line.startswith("vae on digits28")
  ]
  assert len(lines) == 1, lines[:20]
  assert lines[0].startswith(
    "error: process 0 of 2: another process of this run died or became unreachable ("
  ), lines
  assert lines[0].endswith(
    "Restart every process with the same command to resume from the newest checkpoint."
  )
  assert seconds < 30  # --heartbeat_timeout=5, or at once when a collective breaks.
