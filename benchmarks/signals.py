"""Ctrl-C (SIGINT) and SIGTERM for the harness: stop the section being measured, never crash.

The harness keeps what finished when it is stopped, so a signal must end up as a
KeyboardInterrupt in the harness's own code, at any moment of the run. Raised where Python's
default handler raises it, it does not always get there:
- inside the import of a compiled extension (jaxlib, at start-up) it crashes the process
  (segmentation fault, or `terminate called after throwing nanobind::python_error`);
- inside a garbage-collection callback of jax's runtime it is swallowed ("Exception ignored
  in: <function _xla_gc_callback ...>") and the run carries on;
- before the command's `try` (its module-level imports) it is a traceback.
So the handler only records the signal until `start_raising()`; after that it raises, and
where it cannot (an import, a swallowing callback) it runs again a moment later, from a timer
thread through `_thread.interrupt_main`, until it lands in ordinary code.
"""
import _thread
import signal
import sys
import threading
from types import FrameType
from typing import Optional

_RETRY_SECONDS = 0.05
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
  received: Optional[str] = None  # The first signal's name, e.g. "SIGINT".
  raising = False


def received() -> Optional[str]:
  """The name of the first SIGINT/SIGTERM since `install()`, or None."""
  return _State.received


def _handle_again_soon(signum: int) -> None:
  timer = threading.Timer(_RETRY_SECONDS, _thread.interrupt_main, args=(signum,))
  timer.daemon = True
  timer.start()


def _inside_import(frame: Optional[FrameType]) -> bool:
  while frame is not None:
    if frame.f_code.co_filename.startswith("<frozen importlib"):
      return True
    frame = frame.f_back
  return False


def _on_signal(signum: int, frame: Optional[FrameType]) -> None:
  _State.received = _State.received or signal.Signals(signum).name
  if not _State.raising:
    return
  if _inside_import(frame):
    _handle_again_soon(signum)
    return
  raise KeyboardInterrupt


def _on_unraisable(unraisable) -> None:
  """`sys.unraisablehook`: a KeyboardInterrupt swallowed by a callback is raised again."""
  if issubclass(unraisable.exc_type, KeyboardInterrupt):
    _handle_again_soon(signal.SIGINT)
    return
  sys.__unraisablehook__(unraisable)


def install() -> None:
  """From now on SIGINT and SIGTERM are recorded (not raised: see `start_raising`)."""
  for signum in _SIGNALS:
    signal.signal(signum, _on_signal)
  sys.unraisablehook = _on_unraisable


def start_raising() -> None:
  """From now on SIGINT and SIGTERM raise KeyboardInterrupt; raises it at once if one came."""
  _State.raising = True
  if _State.received:
    raise KeyboardInterrupt


def ignore() -> None:
  """Ignores further SIGINT/SIGTERM (while saving what finished: a second Ctrl-C must wait)."""
  for signum in _SIGNALS:
    signal.signal(signum, signal.SIG_IGN)
