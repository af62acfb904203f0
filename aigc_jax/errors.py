"""Errors caused by what the user asked for; the CLI prints their one-line message and exits.

Anything else is a bug in aigc-jax and keeps its traceback.
"""


class UserError(Exception):
  """Base class: the message says in one sentence what is wrong and how to fix it."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work (a wrong key, a bad size, an unsupported combination)."""


class UnknownNameError(ConfigError):
  """A config named something that is not registered; the message lists the valid names."""


class NonFiniteLossError(UserError, FloatingPointError):
  """A loss became NaN or Inf; the message names the step and the loss."""


class WorkdirError(UserError):
  """The workdir cannot be written (read-only, disk full, not a directory)."""


class WorkdirBusyError(WorkdirError):
  """Another run holds the workdir's lock; the message names it (host, pid, start time)."""
