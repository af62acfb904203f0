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
        [sys.executable, "-m", "experiments.train", "--workdir", str(run_dir),
         "--config.train.num_steps=2", "--config.seed=1"],
        cwd=REPO, env=dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "tfds")),
        capture_output=True, text=True, timeout=300)
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
  code = ("import os, signal, sys; from aigc_jax import workdir; "
          "workdir.WorkdirLock(sys.argv[1]).acquire(); os.kill(os.getpid(), signal.SIGKILL)")
  killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, timeout=60,
                          capture_output=True, text=True)
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  lock = workdir.WorkdirLock(str(tmp_path)).acquire()  # Does not block.
  try:
    assert lock.previous_holder["host"] == socket.gethostname()
    dead_pid = lock.previous_holder["pid"]
    assert dead_pid != os.getpid()
  finally:
    lock.release()
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert line.startswith(f"warning: The previous run on this workdir (host "
                         f"{socket.gethostname()}, pid {dead_pid}, started ")
  assert line.endswith("ended without releasing it (killed or crashed); taking over.")


def test_empty_workdir_is_one_line():
  with pytest.raises(WorkdirError, match="^--workdir is empty; pass a directory"):
    workdir.ensure_writable("")


def test_workdir_under_a_file_is_one_line(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(WorkdirError) as info:
    workdir.ensure_writable(str(tmp_path / "file" / "run"))
  assert "\n" not in str(info.value) and "Not a directory" in str(info.value)
