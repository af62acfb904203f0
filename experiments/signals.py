"""Ctrl-C (SIGINT) and SIGTERM from the first instant of every command: one line, never a
signal lost inside jax.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be. Once jax
is loaded that is often somewhere the interrupt does no good:
- inside the import of a compiled extension (jaxlib, at start-up) it crashes the process
  (segmentation fault, or `terminate called after throwing nanobind::python_error`);
- inside a garbage-collection callback of jax's runtime (`_xla_gc_callback`) it is swallowed
  ("Exception ignored in ..."), and the run carries on to the end with exit 0;
- in a module-level import of the command it is a page of traceback.

So every entry point's first statement is `signals.record()`: from then on a signal only sets
a flag (`pending()`), read where stopping is safe. A command then either
- reads the flag itself: `experiments.train` checks it before training (`exit_if_pending`:
  one line, exit 130, nothing saved), and the training loop's `termination_signals()` takes a
  recorded signal over (it stops before its first step, or saves and exits 75); or
- calls `start_raising()` once its own `try` is in place (the benchmarks and the evaluation,
  which keep what finished): from then on a signal raises KeyboardInterrupt, and where it
  cannot land (an import, a swallowing callback) it is raised again a moment later, from a
  timer thread, until it lands in ordinary code.

A second signal while one is only recorded (a dataset being prepared, a peer being waited
for) quits at once with one line, so a long start-up can still be left.

Standard library only: it is imported before anything else, to leave no window open.
"""

import _thread
import os
import signal
import sys
import threading
from types import FrameType
from typing import Optional

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_RETRY_SECONDS = 0.05


def exit_code(signal_name: str) -> int:
  """128 + the signal's number, what shells report for a command a signal stopped (130 for
  Ctrl-C, 143 for SIGTERM): the exit code when nothing was saved."""
  return 128 + signal.Signals[signal_name].value


def describe(signal_name: str) -> str:
  return "Ctrl-C" if signal_name == "SIGINT" else signal_name


class _Handler:
  """The handler of SIGINT and SIGTERM. `signal_name` holds the first signal not yet acted on
  ("SIGINT"/"SIGTERM"); `aigc_jax.training.interrupts.termination_signals` looks for that
  attribute on the handler it replaces and clears it: that is the whole interface between
  the two."""

  def __init__(self):
    self.signal_name: Optional[str] = None
    self.raising = False

  def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
    name = signal.Signals(signum).name
    if not self.raising:
      if self.signal_name is not None:  # The second one: the user does not want to wait.
        print(
          f"Interrupted by {describe(name)} during start-up; nothing was saved.",
          file=sys.stderr,
          flush=True,
        )
        sys.stdout.flush()
        # Not sys.exit: a SystemExit raised here could land in a jax callback, as above.
        os._exit(exit_code(name))  # pylint: disable=protected-access
      self.signal_name = name
      return
    self.signal_name = self.signal_name or name
    if _inside_import(frame):
      _raise_again_soon(signum)
      return
    raise KeyboardInterrupt


_HANDLER = _Handler()


def _raise_again_soon(signum: int) -> None:
  timer = threading.Timer(_RETRY_SECONDS, _thread.interrupt_main, args=(signum,))
  timer.daemon = True
  timer.start()


def _inside_import(frame: Optional[FrameType]) -> bool:
  while frame is not None:
    if frame.f_code.co_filename.startswith("<frozen importlib"):
      return True
    frame = frame.f_back
  return False


def _on_unraisable(unraisable) -> None:
  """`sys.unraisablehook`: a KeyboardInterrupt swallowed by a callback is raised again."""
  if issubclass(unraisable.exc_type, KeyboardInterrupt) and _HANDLER.raising:
    _raise_again_soon(signal.SIGINT)
    return
  sys.__unraisablehook__(unraisable)


def record() -> None:
  """From now on SIGINT and SIGTERM set a flag (`pending`) instead of raising.

  Only the main thread can install signal handlers; elsewhere this does nothing.
  """
  if threading.current_thread() is threading.main_thread():
    for signum in _SIGNALS:
      signal.signal(signum, _HANDLER)
    sys.unraisablehook = _on_unraisable


def pending() -> Optional[str]:
  """The name of the first signal recorded and not yet taken over, or None."""
  return _HANDLER.signal_name


def exit_if_pending(message: str = "before training started; nothing was saved.") -> None:
  """One line `Interrupted by <signal> <message>` and exit 130/143 if a signal was recorded."""
  name = pending()
  if name:
    print(f"Interrupted by {describe(name)} {message}", file=sys.stderr)
    sys.exit(exit_code(name))


def start_raising() -> None:
  """From now on SIGINT and SIGTERM raise KeyboardInterrupt; raises it at once if one came."""
  _HANDLER.raising = True
  if _HANDLER.signal_name:
    raise KeyboardInterrupt


def exit_now(code: int) -> None:
  """Flushes and exits without the interpreter's shutdown, whose clean-up of jax's runtime can
  crash (a segmentation fault, 1 in 3 tries) after an interrupt landed inside its dispatch.
  For the way out of an interrupted run, once what matters is written and closed."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)  # pylint: disable=protected-access


def ignore() -> None:
  """Ignores further SIGINT/SIGTERM (while saving what finished: a second Ctrl-C must wait)."""
  for signum in _SIGNALS:
    signal.signal(signum, signal.SIG_IGN)
