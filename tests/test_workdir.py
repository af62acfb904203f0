"""One run per workdir: a second run is refused naming the holder; a dead holder's lock is
taken over and reported; an empty or unwritable workdir is one line."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from aigc_jax import workdir
from aigc_jax.errors import WorkdirBusyError, WorkdirError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_second_run_on_a_held_workdir_exits_2_naming_the_holder(tmp_path):
  """The other terminal: this test process holds the lock, as a training run would."""
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  with workdir.WorkdirLock(str(run_dir)):
    result = subprocess.run(
      [
        sys.executable,
        "-m",
        "experiments.train",
        "--workdir",
        str(run_dir),
        "--config.train.num_steps=2",
        "--config.seed=1",
      ],
      cwd=REPO,
      env=dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "tfds")),
      capture_output=True,
      text=True,
      timeout=300,
    )
  assert result.returncode == 2, result.stderr[-3000:]
  (line,) = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
  assert f"is in use by another run (host {socket.gethostname()}, pid {os.getpid()}, " in line
  assert "Traceback" not in result.stderr
  assert sorted(os.listdir(run_dir)) == [workdir.LOCK_NAME]  # It wrote nothing.


def test_lock_in_process_refuses_a_second_holder_and_frees_on_release(tmp_path):
  first = workdir.WorkdirLock(str(tmp_path)).acquire()
  with pytest.raises(WorkdirBusyError, match=f"pid {os.getpid()}"):
    workdir.WorkdirLock(str(tmp_path)).acquire()
  first.release()
  with workdir.WorkdirLock(str(tmp_path)) as again:
    assert again.previous_holder is None  # A clean release leaves no stale record.
  # Processes other than 0 of a multi-host run never take it.
  with workdir.WorkdirLock(str(tmp_path)), workdir.WorkdirLock(str(tmp_path), process_index=1):
    pass


def test_lock_of_a_killed_run_is_taken_over_and_reported(tmp_path, capsys):
  code = (
    "import os, signal, sys; from aigc_jax import workdir; "
    "workdir.WorkdirLock(sys.argv[1]).acquire(); os.kill(os.getpid(), signal.SIGKILL)"
  )
  killed = subprocess.run(
    [sys.executable, "-c", code, str(tmp_path)],
    cwd=REPO,
    timeout=60,
    capture_output=True,
    text=True,
  )
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  lock = workdir.WorkdirLock(str(tmp_path)).acquire()  # Does not block.
  try:
    assert lock.previous_holder["host"] == socket.gethostname()
    dead_pid = lock.previous_holder["pid"]
    assert dead_pid != os.getpid()
  finally:
    lock.release()
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert line.startswith(
    f"warning: The previous run on this workdir (host "
    f"{socket.gethostname()}, pid {dead_pid}, started "
  )
  assert line.endswith("ended without releasing it (killed or crashed); taking over.")


def test_empty_workdir_is_one_line():
  with pytest.raises(WorkdirError, match="^--workdir is empty; pass a directory"):
    workdir.ensure_writable("")


def test_workdir_under_a_file_is_one_line(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(WorkdirError) as info:
    workdir.ensure_writable(str(tmp_path / "file" / "run"))
  assert "\n" not in str(info.value) and "Not a directory" in str(info.value)


def test_an_earlier_runs_outputs_are_set_aside_and_nothing_else(tmp_path):
  """`--fresh` moves exactly `RUN_OUTPUTS` into discarded/<UTC time>/; other files stay."""
  run_dir = tmp_path / "run"
  (run_dir / "checkpoints" / "10").mkdir(parents=True)
  (run_dir / "eval" / "step_10").mkdir(parents=True)
  (run_dir / "metrics.jsonl").write_text("{}\n")
  (run_dir / "notes.txt").write_text("mine")
  assert workdir.newest_step(str(run_dir)) == 10 and workdir.has_checkpoints(str(run_dir))
  moved = workdir.set_aside_previous_run(str(run_dir))
  assert os.path.dirname(moved) == str(run_dir / workdir.DISCARDED_DIR)
  assert sorted(os.listdir(moved)) == ["checkpoints", "eval", "metrics.jsonl"]
  assert sorted(os.listdir(run_dir)) == ["discarded", "notes.txt"]
  assert not workdir.has_checkpoints(str(run_dir))
  assert workdir.set_aside_previous_run(str(run_dir)) is None  # Nothing left to move.


def test_the_newest_step_counts_finished_saves_only(tmp_path):
  assert workdir.newest_step(str(tmp_path)) is None  # No checkpoints/ at all.
  for name in ("5", "20", "30.orbax-checkpoint-tmp-1234"):
    (tmp_path / workdir.LATEST_DIR / name).mkdir(parents=True)
  assert workdir.newest_step(str(tmp_path)) == 20


def test_things_set_aside_get_names_of_their_own(tmp_path):
  first, second = (workdir.discarded_path(str(tmp_path), "damaged-step-20-") for _ in range(2))
  assert first != second and not os.path.exists(first)
  assert os.path.basename(first).startswith("damaged-step-20-20")  # ...-<UTC year>...
