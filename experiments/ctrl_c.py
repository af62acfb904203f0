"""Ctrl-C from the first instant of a command: recorded, never raised inside jax.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be. Once
jax is loaded that is often one of its callbacks (`_xla_gc_callback`, run by the garbage
collector), which swallows it ("Exception ignored in ..."): the run then trains to the end,
or stops with a page of traceback, or crashes at exit. A command whose first statement is
`ctrl_c.record()` gets a flag instead, read where stopping is safe: by
`experiments.cli.exit_if_interrupted` before training (exit 130, nothing saved) and by the
training loop, whose `termination_signals()` takes over a recorded Ctrl-C (it stops before
its first step, or saves and exits 75).

A second Ctrl-C while only recorded (a dataset being prepared, a peer being waited for)
quits at once, with the same one line and exit 130, so a long start-up can still be left.

Standard library only: it is imported before anything else, to leave no window open.
"""
import os
import signal
import sys
import threading
from typing import Optional

EXIT_CODE = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C.
MESSAGE = "Interrupted by Ctrl-C before training started; nothing was saved."


class Recorder:
  """A SIGINT handler that remembers the signal in `signal_name` ("SIGINT" once one came).

  `aigc_jax.training.interrupts.termination_signals` looks for that attribute on the handler
  it replaces; that is the whole interface between the two.
  """

  def __init__(self):
    self.signal_name: Optional[str] = None

  def __call__(self, signum, frame) -> None:
    del frame
    if self.signal_name is not None:  # The second one: the user does not want to wait.
      print(MESSAGE, file=sys.stderr, flush=True)
      sys.stdout.flush()
      # Not sys.exit: a SystemExit raised here could land in a jax callback, as above.
      os._exit(EXIT_CODE)  # pylint: disable=protected-access
    self.signal_name = signal.Signals(signum).name


def record() -> None:
  """From now on a Ctrl-C sets a flag (see `pending`) instead of raising KeyboardInterrupt.

  Only the main thread can install signal handlers; elsewhere this does nothing.
  """
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, Recorder())


def pending() -> Optional[str]:
  """"SIGINT" if the installed handler is a `Recorder` that recorded one, else None."""
  return getattr(signal.getsignal(signal.SIGINT), "signal_name", None)
