"""SIGTERM / SIGINT turn into a saved checkpoint and a clean exit, not a lost run.

Schedulers announce preemption with SIGTERM and people stop runs with Ctrl-C (SIGINT). While
`termination_signals()` is active, either signal only sets a flag; the loop finishes the step
it is in, saves a checkpoint and raises `TrainingInterrupted`. The CLI exits with
`EXIT_CODE_INTERRUPTED`. A SIGINT that came before the loop and was recorded (by the CLI's
`experiments.signals`, so that it never became a KeyboardInterrupt inside jax) is taken over:
the loop then stops before its first step with `TrainingNotStarted`.
"""

import contextlib
import signal
import threading
from typing import Optional

# EX_TEMPFAIL of sysexits.h: "temporary failure, the user is invited to retry". Rerunning the
# same command resumes from the checkpoint saved on the way out.
EXIT_CODE_INTERRUPTED = 75


class TrainingInterrupted(Exception):
  """Raised by the loop after it saved a checkpoint on SIGTERM or SIGINT."""

  def __init__(self, signal_name: str, step: int, checkpoint_dir: str):
    super().__init__(
      f"{signal_name} received: saved the checkpoint of step {step} in {checkpoint_dir}; "
      "run the same command again to resume."
    )
    self.signal_name = signal_name
    self.step = step


class TrainingNotStarted(Exception):
  """Raised by the loop when a signal came before its first step: nothing was saved."""

  def __init__(self, signal_name: str):
    by = "Ctrl-C" if signal_name == "SIGINT" else signal_name
    super().__init__(f"Interrupted by {by} before training started; nothing was saved.")
    self.signal_name = signal_name


class _Flag:
  signal_name = None


def _take_recorded(handler) -> Optional[str]:
  """The signal a recording handler (one with a `signal_name`, as `experiments.signals`'s)
  holds; cleared there, since it is the loop's to act on now."""
  name = getattr(handler, "signal_name", None)
  if name is not None:
    handler.signal_name = None
  return name


@contextlib.contextmanager
def termination_signals():
  """Yields a flag whose `signal_name` is set ("SIGTERM"/"SIGINT") once a signal arrives,
  or already set if the handlers it replaces had recorded one (see `_take_recorded`).

  Outside the main thread (where Python cannot install handlers) the flag never fires.
  """
  flag = _Flag()
  if threading.current_thread() is not threading.main_thread():
    yield flag
    return

  def handler(signum, frame):
    del frame
    flag.signal_name = signal.Signals(signum).name

  previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
  for earlier in previous.values():
    flag.signal_name = flag.signal_name or _take_recorded(earlier)
  try:
    yield flag
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
