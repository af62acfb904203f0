"""What a run tells its user: one line per event that matters, above the progress bar.

Events (a resume, a fallback to an older checkpoint, a lock taken over from a dead run, a
warning the user must see) go through the `aigc_jax` logger, one line each, to stderr via
`tqdm.write` so they never break the progress bar. Library logs (orbax, absl, jax: about
220 INFO lines per run) are another channel: `quiet_library_logs` keeps them to warnings
unless the user asks for more (`--verbosity=0` on the command line).

Library users silence the events as any Python logger:
`logging.getLogger("aigc_jax").setLevel(logging.WARNING)`.
"""

import logging
import os
import sys
from typing import Iterable, Mapping

import tqdm
from absl import logging as absl_logging

LOGGER = logging.getLogger("aigc_jax")


class _AboveProgressBar(logging.Handler):
  """Writes each record as one line through `tqdm.write`, to the current `sys.stderr`."""

  def emit(self, record: logging.LogRecord) -> None:
    try:
      message = " ".join(record.getMessage().split())  # One line, whatever the message.
      prefix = "warning: " if record.levelno >= logging.WARNING else ""
      tqdm.tqdm.write(prefix + message, file=sys.stderr)
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


if not any(isinstance(h, _AboveProgressBar) for h in LOGGER.handlers):
  LOGGER.addHandler(_AboveProgressBar())
  LOGGER.setLevel(logging.INFO)
  LOGGER.propagate = False  # absl's root handler would print every line a second time.


def event(message: str) -> None:
  """One line the user should see (a resume, a set-aside folder...)."""
  LOGGER.info(message)


def warning(message: str) -> None:
  """One line the user must see, prefixed `warning: `."""
  LOGGER.warning(message)


def format_metrics(metrics: Mapping[str, float]) -> str:
  """`{"loss": 98.123, "kl": 3.2}` -> `kl 3.2, loss 98.12` (sorted, 4 significant digits)."""
  return ", ".join(f"{name} {value:.4g}" for name, value in sorted(metrics.items()))


def print_summary(lines: Iterable[str]) -> None:
  """The end-of-run summary, on stdout (what a user keeps when redirecting the output)."""
  for line in lines:
    print(line, flush=True)


def quiet_library_logs(verbosity_given: bool) -> None:
  """Keeps absl-routed library logs (orbax, jax) to warnings unless a verbosity was asked for.

  absl raises its default verbosity from WARNING to INFO once flags are parsed; the
  command-line tools call this right after parsing. TensorFlow's C++ logs (when the
  `catalog` extra is installed) are kept to errors the same way.
  """
  if verbosity_given:
    return
  absl_logging.set_verbosity(absl_logging.WARNING)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
