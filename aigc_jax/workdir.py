"""A run's workdir: its layout, proving it writable, one training run per workdir
(`WorkdirLock`), and setting an earlier run's outputs aside (`set_aside_previous_run`).

Layout (what a training run writes; `aigc_jax.checkpointing` fills the checkpoint folders):
  checkpoints/       orbax steps, the newest `checkpoint.keep_last` (`LATEST_DIR`)
  checkpoints_best/  the best by an evaluation metric (`BEST_DIR`)
  discarded/         whatever was set aside instead of deleted (`DISCARDED_DIR`)
  run.lock           the lock of the run that holds the workdir (`LOCK_NAME`)
  and the logs and outputs of `RUN_OUTPUTS`.

Nothing a run wrote is deleted: an earlier run's outputs, damaged checkpoints and best saves
of steps a resume recomputes all move into `discarded/<what>-<UTC time>/` (`discarded_path`).

The lock is an OS lock held by process 0 of the run.

`workdir/run.lock` is locked with `fcntl.flock`, which the kernel releases when the holding
process dies however it dies, so a crashed or killed run never blocks its workdir. The file
also records who holds it (host, pid, start time): a second run is refused with one line
naming the holder, and a run that finds a record but no lock knows the previous holder
ended without releasing it (killed or crashed) and says so.

Only process 0 of a (multi-host) run takes the lock; the other processes of the same run
write nothing that another run could clash with.

This module imports neither jax nor orbax.
"""

import datetime
import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
from typing import Any, Dict, Optional

from aigc_jax import console
from aigc_jax.errors import WorkdirBusyError, WorkdirError

LOCK_NAME = "run.lock"
LATEST_DIR = "checkpoints"
BEST_DIR = "checkpoints_best"
DISCARDED_DIR = "discarded"
# Everything a run writes in its workdir (besides the lock and discarded/): what `--fresh`
# and a restart from step 0 set aside.
RUN_OUTPUTS = (
  LATEST_DIR,
  BEST_DIR,
  "config.json",
  "resumes.jsonl",
  "metrics.jsonl",
  "tensorboard",
  "images",
  "eval",
)


def discarded_path(workdir: str, prefix: str = "") -> str:
  """`workdir/discarded/<prefix><UTC time>`: a new name for something set aside (not created).

  The time has microseconds, so two things set aside by one run get different names.
  """
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
  return os.path.join(workdir, DISCARDED_DIR, prefix + stamp)


def newest_step(workdir: str) -> Optional[int]:
  """The newest step in `workdir/checkpoints/` (not checked for damage), or None.

  Orbax names each finished step's folder by the step alone; a save in progress has a
  temporary name, so it is not counted.
  """
  directory = os.path.join(workdir, LATEST_DIR)
  steps = [int(n) for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []
  return max(steps, default=None)


def has_checkpoints(workdir: str) -> bool:
  """Whether `workdir/checkpoints/` holds any finished step (damaged ones included)."""
  return newest_step(workdir) is not None


def set_aside_previous_run(workdir: str) -> Optional[str]:
  """Moves an earlier run's outputs (`RUN_OUTPUTS`) into `workdir/discarded/<UTC time>/`.

  Used by `--fresh` and by a run that starts from step 0 in a workdir with an earlier run's
  logs: nothing already written is deleted, and no two runs share a log. Other files in the
  workdir are left where they are. Returns the new folder, or None if there was nothing.
  """
  names = [n for n in RUN_OUTPUTS if os.path.exists(os.path.join(workdir, n))]
  if not names:
    return None
  target = discarded_path(workdir)
  os.makedirs(target)
  for name in names:
    shutil.move(os.path.join(workdir, name), os.path.join(target, name))
  return target


def ensure_writable(directory: str, flag: str = "--workdir") -> None:
  """Creates `directory` and proves it writable, or raises WorkdirError in one sentence.

  `flag` names the command-line flag that chose the directory, for the message.
  """
  if not directory:
    raise WorkdirError(f"{flag} is empty; pass a directory for the outputs, e.g. {flag}=runs/demo.")
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
      pass
  except OSError as e:
    raise WorkdirError(
      f"Cannot write to {os.path.abspath(directory)} ({e.strerror or e}); choose a "
      f"writable {flag} with free space."
    ) from e


def _describe(record: Dict[str, Any]) -> str:
  return (
    f"host {record.get('host', '?')}, pid {record.get('pid', '?')}, started "
    f"{record.get('started', '?')}"
  )


def _read_record(fd: int) -> Optional[Dict[str, Any]]:
  """The holder record in the lock file, or None if it is empty or unreadable."""
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 65536).decode("utf-8", errors="replace").strip()
  if not text:
    return None
  try:
    record = json.loads(text)
  except ValueError:
    return {"host": "?", "pid": "?", "started": "?"}
  return record if isinstance(record, dict) else None


class WorkdirLock:
  """The lock of one workdir; `acquire()` / `release()`, or use as a context manager.

  Args:
    workdir: the run's directory (must exist).
    process_index: this process's index in the run (`jax.process_index()`); only 0 locks.
  """

  def __init__(self, workdir: str, process_index: int = 0):
    self.path = os.path.join(os.path.abspath(workdir), LOCK_NAME)
    self._takes_lock = process_index == 0
    self._fd: Optional[int] = None
    self.previous_holder: Optional[Dict[str, Any]] = None  # A holder that died holding it.

  def acquire(self) -> "WorkdirLock":
    """Takes the lock, or raises WorkdirBusyError naming the run that holds it."""
    if not self._takes_lock or self._fd is not None:
      return self
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(
        f"Cannot create the lock file {self.path} ({e.strerror or e}); choose a writable --workdir."
      ) from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_record(fd)
      os.close(fd)
      raise WorkdirBusyError(
        f"The workdir {os.path.dirname(self.path)} is in use by another run "
        f"({_describe(holder) if holder else 'holder unknown'}); wait for it to finish, stop "
        "it, or choose another --workdir."
      ) from None
    except OSError as e:
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
        os.close(fd)
        raise
      console.warning(
        f"The filesystem of {self.path} cannot lock files ({e.strerror}); make "
        "sure no other run uses this workdir."
      )
    self.previous_holder = _read_record(fd)
    if self.previous_holder:
      console.warning(
        f"The previous run on this workdir ({_describe(self.previous_holder)}) ended without "
        "releasing it (killed or crashed); taking over."
      )
    record = {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(record) + "\n").encode())
    os.fsync(fd)
    self._fd = fd
    return self

  def release(self) -> None:
    """Empties the record (a clean end) and releases the lock."""
    if self._fd is None:
      return
    fd, self._fd = self._fd, None
    try:
      os.ftruncate(fd, 0)
    except OSError:
      pass  # A full or read-only disk: the kernel lock goes anyway; the record then looks stale.
    finally:
      os.close(fd)  # Closing the last descriptor releases the flock.

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc_info) -> None:
    self.release()
