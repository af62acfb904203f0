"""What the experiment entry points share: flag parsing and one-line errors for user mistakes."""
import re
import sys

from absl import flags
from ml_collections import config_flags


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _fail_unknown_key(error: Exception) -> None:
  text = str(error.args[0] if error.args else error).replace("\\", "")
  keys = re.findall(r"'([^']+)'", text)
  suggestion = re.search(r'Did you mean "([^"]+)"', text)
  message = f"Unknown config key {keys[0]!r}" if keys else f"Unknown config key ({text})"
  if suggestion:
    message += f" (did you mean {suggestion.group(1)!r}?)"
  _fail(message + "; the valid keys are in experiments/configs/base.py.")


def define_config_flag(default_path: str):
  """`--config` (a config file) with `--config.a.b=value` overrides; a wrong key is one line.

  ml_collections applies the overrides while defining the flag, so typos surface here.
  """
  try:
    return config_flags.DEFINE_config_file(
        "config", default_path,
        "Experiment config file; override its keys with --config.a.b=value.", lock_config=True)
  except (AttributeError, KeyError) as e:
    _fail_unknown_key(e)


def parse_flags(argv):
  """absl flag parser for `app.run(flags_parser=...)`: flag errors become one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e))
  except (AttributeError, KeyError) as e:
    _fail_unknown_key(e)
  return None


def config_value(config_flag):
  """The parsed config, or one line when the config file cannot be loaded."""
  config = config_flag.value
  try:
    config.keys()  # A config file that failed to load raises on first use, not on `.value`.
  except OSError as e:
    reason = " ".join(str(e).split())
    _fail(f"Cannot load the config file given to --config ({reason}); pass an existing "
          "experiments/configs/<name>.py.")
  return config


def run_reporting_user_errors(fn, *args, **kwargs):
  """Runs `fn(...)`: a `UserError` becomes one line on stderr and exit code 2; an interrupted
  run (SIGTERM/SIGINT, checkpoint saved) one line and `EXIT_CODE_INTERRUPTED` (75)."""
  # Late imports: jax must start after the flags are parsed.
  from aigc_jax.errors import UserError
  from aigc_jax.training.interrupts import EXIT_CODE_INTERRUPTED, TrainingInterrupted
  try:
    return fn(*args, **kwargs)
  except UserError as e:
    _fail(str(e))
  except TrainingInterrupted as e:
    print(str(e), file=sys.stderr)
    sys.exit(EXIT_CODE_INTERRUPTED)
