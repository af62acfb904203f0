"""The watcher of one process of a multi-process run (see `cli.supervise`).

It re-runs the command as a child, passes stdout through untouched and stderr line by line,
and turns JAX's fatal end of a process whose peer died (an abort with a C++ stack trace) into
one line. Imports nothing of jax.
"""

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading

from aigc_jax import distributed

# Connection chatter of the gloo CPU collectives, printed at every new communicator (by
# several threads at once, so its lines come interleaved).
_NOISE = re.compile(rb"\[Gloo\]|is connected to \d+ peer ranks|connected peer ranks is : \d+")
# Lines of glog severity E/F from JAX's distributed runtime, and what follows a fatal one.
_RUNTIME_ERROR = re.compile(rb"^E\d{4} .*(coordination_service|client\.h|distributed|preemption)")
# Where a glog line of severity E or F starts: "E1125 12:33:09.950498    5432 file.cc:1549] ".
_GLOG = re.compile(rb"[EF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+:\d+\] ")
# The lines that continue such an error: the tasks it names and JAX's advice.
_RUNTIME_ERROR_CONTINUED = re.compile(rb"^\s*(\d+|/job:\S+|The tasks have crashed.*)\s*$")
_FATAL = re.compile(rb"^F\d{4} |^\*\*\* Check failure stack trace")
_DETAILS = (
  (
    re.compile(rb"DEADLINE_EXCEEDED|[Bb]arrier timed out|timed out"),
    "JAX's distributed runtime timed out waiting for it",
  ),
  (
    re.compile(rb"another task died|Failed to send RPC|Socket closed|UNAVAILABLE"),
    "JAX's distributed runtime lost contact with it",
  ),
)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover (runs in the child before exec)
  """Linux: the child gets SIGKILL when this supervisor dies (a killed process takes its
  JAX process with it, so the peers see it go)."""
  try:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  except (OSError, AttributeError):
    pass


def _child_command():
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  if spec is not None and spec.name:
    return [sys.executable, "-m", spec.name] + sys.argv[1:]
  return [sys.executable] + sys.argv


class _StreamFilter:
  """Passes one of the child's streams through, minus gloo chatter; swallows a fatal abort's
  report (what the runtime prints from the moment it decides to abort the process)."""

  def __init__(self, out):
    self._out = out
    self._partial = b""
    self.fatal = False
    self.fatal_text = b""
    self._after_noise = False
    self._in_runtime_error = False
    self.at_line_start = True

  def feed(self, chunk: bytes) -> None:
    data = self._partial + chunk
    pieces = re.split(rb"(?<=[\n\r])", data)
    self._partial = pieces.pop() if pieces and not pieces[-1].endswith((b"\n", b"\r")) else b""
    for piece in pieces:
      self._line(piece)

  def relay(self, stream) -> None:
    """Copies `stream` (the child's pipe) through this filter until it closes."""
    while True:
      chunk = os.read(stream.fileno(), 65536)
      if not chunk:
        break
      self.feed(chunk)
    self.close()

  def close(self) -> None:
    if self._partial:
      self._line(self._partial)
      self._partial = b""

  def _line(self, line: bytes) -> None:
    start = _GLOG.search(line)
    if start and start.start() > 0:  # The runtime writes over an unfinished progress bar.
      self._line(line[: start.start()])
      line = line[start.start() :]
    if self.fatal or _FATAL.search(line):
      self.fatal = True
      self.fatal_text += line[:2000]
      return
    if _NOISE.search(line) or (self._after_noise and not line.strip()):
      self._after_noise = True  # The blank remains of interleaved chatter go with it.
      return
    self._after_noise = False
    if _RUNTIME_ERROR.search(line) or (
      self._in_runtime_error and _RUNTIME_ERROR_CONTINUED.search(line)
    ):
      self._in_runtime_error = True
      self.fatal_text += line[:2000]  # The one line at the end says what it meant.
      return
    self._in_runtime_error = False
    self._out.write(line)
    self._out.flush()
    self.at_line_start = line.endswith(b"\n")


def _detail(*filters: _StreamFilter) -> str:
  """What the runtime's swallowed report says happened, in a few words."""
  text = b"".join(f.fatal_text for f in filters)
  for pattern, description in _DETAILS:
    if pattern.search(text):
      return description
  return "JAX's distributed runtime stopped this process"


def run_child(settings, marker_env: str, command=None) -> int:
  """Runs `command` (default: this command again) with `marker_env` set; returns the exit
  code to exit with: the child's, or `EXIT_CODE_PEER_LOST` after a fatal runtime abort."""
  env = dict(os.environ, **{marker_env: "1"})
  child = subprocess.Popen(
    command or _child_command(),
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    preexec_fn=_die_with_parent,
  )

  def forward(signum, frame):
    del frame
    if child.poll() is None:
      child.send_signal(signum)

  for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, forward)
  stdout_filter = _StreamFilter(getattr(sys.stdout, "buffer", sys.stdout))
  stdout_relay = threading.Thread(target=stdout_filter.relay, args=(child.stdout,), daemon=True)
  stdout_relay.start()
  stderr_filter = _StreamFilter(getattr(sys.stderr, "buffer", sys.stderr))
  stderr_filter.relay(child.stderr)
  code = child.wait()
  stdout_relay.join(timeout=10)
  if stderr_filter.fatal or stdout_filter.fatal or code in (-signal.SIGABRT, 128 + signal.SIGABRT):
    message = distributed.peer_lost_message(
      _detail(stderr_filter, stdout_filter), settings.process_id, settings.num_processes
    )
    start = "" if stderr_filter.at_line_start else "\n"  # Below an unfinished progress bar.
    print(f"{start}error: {message}", file=sys.stderr, flush=True)
    return distributed.EXIT_CODE_PEER_LOST
  if code < 0:  # Killed by a signal: exit the way a shell reports it.
    return 128 - code
  return code
