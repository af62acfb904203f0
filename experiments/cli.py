"""What the experiment entry points share: flag parsing, quiet library logs, and one-line errors.

Exit codes: 0 done, 2 a user error (one line `error: ...` on stderr), 75 interrupted and
saved (rerun to resume), 69 another process of a multi-process run died (rerun them all to
resume), 130 stopped by Ctrl-C before training started, 1 a bug (traceback).
"""

import os
import re
import sys
from typing import List, Optional

from absl import flags
from ml_collections import config_flags

from aigc_jax import console
from aigc_jax.errors import UserError
from experiments import config_files, signals

EXIT_USER_ERROR = 2
_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def fail(message: str) -> None:
  """Prints `error: <message>` (one line) on stderr and exits with EXIT_USER_ERROR."""
  print(f"error: {' '.join(message.split())}", file=sys.stderr)
  sys.exit(EXIT_USER_ERROR)


def _fail_unknown_key(error: Exception) -> None:
  text = str(error.args[0] if error.args else error).replace("\\", "")
  keys = re.findall(r"'([^']+)'", text)
  suggestion = re.search(r'Did you mean "([^"]+)"', text)
  message = f"Unknown config key {keys[0]!r}" if keys else f"Unknown config key ({text})"
  if suggestion:
    message += f" (did you mean {suggestion.group(1)!r}?)"
  fail(message + "; the valid keys are in experiments/configs/base.py.")


def define_config_flag(default_path: str):
  """`--config` (a config file, or a run's config.json: `experiments.config_files`) with
  `--config.a.b=value` overrides; a wrong key is one line.

  Without `--config`, ml_collections loads the default and applies the overrides while
  defining the flag, so typos surface here. A `--config` given is loaded when flags are
  parsed, by `config_files.Parser` (one line for a file that gives no usable config).
  """
  try:
    holder = config_flags.DEFINE_config_file(
      "config",
      default_path,
      "Experiment config file (or a run's config.json); override its keys with --config.a.b=value.",
      lock_config=True,
    )
  except (AttributeError, KeyError) as e:
    _fail_unknown_key(e)
  flags.FLAGS[holder.name].parser = config_files.Parser()
  return holder


def _config_path(argv: List[str]) -> Optional[str]:
  """The file given to `--config` in `argv` (without a `:argument` suffix), or None."""
  path = None
  for index, arg in enumerate(argv[1:], start=1):
    if arg == "--":
      break
    if arg.startswith("--config="):
      path = arg[len("--config=") :]
    elif arg == "--config" and index + 1 < len(argv):
      path = argv[index + 1]
  return None if path is None else path.split(":", 1)[0]


def _available_configs() -> str:
  names = sorted(
    n[:-3]
    for n in os.listdir(_CONFIGS_DIR)
    if n.endswith(".py") and n not in ("__init__.py", "base.py")
  )
  return ", ".join(names)


def _check_config_path(path: Optional[str]) -> None:
  """One line for a `--config` that is missing, a folder or empty, before ml_collections
  (whose errors are tracebacks when overrides follow) tries to load it."""
  if path is None:
    return
  hint = (
    f"pass experiments/configs/<name>.py with <name> one of: {_available_configs()}, "
    "or a run's <workdir>/config.json"
  )
  if not path:
    fail(f"--config is empty; {hint}.")
  if os.path.isdir(path):
    fail(f"--config {path} is a directory, not a config file; {hint}.")
  if not os.path.isfile(path):
    fail(f"The config file {path} does not exist; {hint}.")


_HELP_FLAGS = frozenset({"-?", "-h", "--help", "--helpshort", "--helpfull", "--helpxml"})


def parse_flags(argv):
  """absl flag parser for `app.run(flags_parser=...)`: flag errors become one line.

  Also keeps library INFO logs quiet unless `--verbosity` (absl's `-v`) was given.
  """
  config_path = _config_path(argv)
  _check_config_path(config_path)
  try:
    remaining = flags.FLAGS(argv)
  except config_files.ConfigFileError as e:
    fail(str(e))
  except flags.Error as e:
    fail(str(e))
  except AttributeError as e:
    _fail_unknown_key(e)
  except KeyError as e:
    _fail_unknown_key(e)
  except OSError as e:  # The config file failed to load, reported by an override.
    fail(f"Cannot load the config file given to --config ({' '.join(str(e).split())}).")
  except SystemExit as e:
    if e.code == 1 and _HELP_FLAGS.intersection(a.split("=", 1)[0] for a in argv[1:]):
      sys.exit(0)  # absl prints the help asked for, then exits 1, as if it were an error.
    raise
  console.quiet_library_logs(verbosity_given=flags.FLAGS["verbosity"].present)
  return remaining


def folder_flag_problem(
  flag: str, path: Optional[str], what: str, *, must_exist: bool
) -> Optional[str]:
  """Why the folder given to `--flag` cannot be used, in one sentence ending in "pass
  <what>.", or None (also when the flag was not given: `path` None).

  must_exist: the folder must exist already (an input); otherwise a new one is fine (an
  output), but never a file. Looks only at the file system, so it runs before jax starts.
  """
  if path is None:
    return None
  if not path.strip():
    return f"--{flag} is empty; pass {what}."
  if os.path.exists(path) and not os.path.isdir(path):
    return f"--{flag} {path} is a file, not a folder; pass {what}."
  if must_exist and not os.path.isdir(path):
    return f"--{flag} {path} does not exist; pass {what}."
  return None


def out_folder_problem(path: str, flag: str = "out") -> Optional[str]:
  """Why `path` cannot be the output folder of a command that resumes into it (the benchmarks):
  it must be new or that command's own earlier output, never a file or a training workdir
  (the command would write its files into that run). None when it can."""
  from aigc_jax.hallucination_benchmark import folder  # pylint: disable=import-outside-toplevel

  return folder_flag_problem(
    flag, path, f"a new folder or the --{flag} of an earlier run of this command", must_exist=False
  ) or folder.training_run_problem(path, f"--{flag}")


def no_positional_arguments(argv) -> None:
  """Unexpected positional arguments are a user error (absl's UsageError would exit 1)."""
  if len(argv) > 1:
    fail(f"Unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value).")


def config_value(config_flag):
  """The parsed config, or one line when the config file cannot be loaded."""
  config = config_flag.value
  try:
    config.keys()  # A config file that failed to load raises on first use, not on `.value`.
  except OSError as e:
    reason = " ".join(str(e).split())
    fail(
      f"Cannot load the config file given to --config ({reason}); pass an existing "
      "experiments/configs/<name>.py."
    )
  except AttributeError:
    fail(
      "The config file given to --config returned no ConfigDict from get_config(); it "
      "must return one (see experiments/configs/vae_digits.py)."
    )
  return config


def run_reporting_user_errors(fn, *args, **kwargs):
  """Runs `fn(...)`: a `UserError` becomes one line on stderr and exit code 2; an interrupted
  run (SIGTERM/SIGINT, checkpoint saved) one line and `EXIT_CODE_INTERRUPTED` (75); a run
  stopped before its first step (`TrainingNotStarted`, nothing saved) one line and 130 (143
  for SIGTERM).

  Imports nothing of jax, so it can run checks before jax starts.
  """
  try:
    return fn(*args, **kwargs)
  except UserError as e:
    fail(str(e))
  except KeyboardInterrupt:  # Raised by `signals.start_raising`'s handler: nothing saved.
    name = signals.pending() or "SIGINT"
    signals.ignore()
    print(f"Interrupted by {signals.describe(name)}; nothing was saved.", file=sys.stderr)
    signals.exit_now(signals.exit_code(name))
  except Exception as e:
    interrupts = sys.modules.get("aigc_jax.training.interrupts")  # Loaded if it was raised.
    if interrupts is not None and isinstance(e, interrupts.TrainingInterrupted):
      print(str(e), file=sys.stderr)
      sys.exit(interrupts.EXIT_CODE_INTERRUPTED)
    if interrupts is not None and isinstance(e, interrupts.TrainingNotStarted):
      print(str(e), file=sys.stderr)
      sys.exit(signals.exit_code(e.signal_name))
    distributed = sys.modules.get("aigc_jax.distributed")
    if distributed is not None and distributed.is_peer_failure(e):
      import jax  # pylint: disable=import-outside-toplevel

      message = distributed.peer_lost_message(
        distributed.peer_failure_detail(e), jax.process_index(), jax.process_count()
      )
      import tqdm  # pylint: disable=import-outside-toplevel

      tqdm.tqdm.write(f"error: {message}", file=sys.stderr)  # Below any progress bar.
      sys.stderr.flush()
      sys.stdout.flush()
      # Not sys.exit: the runtime's shutdown at exit would wait for the dead peer.
      os._exit(distributed.EXIT_CODE_PEER_LOST)  # pylint: disable=protected-access
    raise
  return None


# ---- Multi-process runs (aigc_jax.distributed) ----


def define_distributed_flags():
  """The flags that turn a command into one process of a multi-process run.

  Each falls back to its environment variable; with none of them set, the command runs as a
  single process and JAX's distributed runtime is never started.
  """
  flags.DEFINE_bool(
    "distributed",
    False,
    "Start JAX's distributed runtime, detecting the missing settings "
    "from the cluster (Cloud TPU pod slice, SLURM, Open MPI, Kubernetes).",
  )
  flags.DEFINE_string(
    "coordinator_address",
    None,
    "HOST:PORT of process 0 of a multi-process run (default: "
    "$JAX_COORDINATOR_ADDRESS); setting it starts JAX's distributed runtime.",
  )
  flags.DEFINE_integer("num_processes", None, "Processes in the run (default: $JAX_NUM_PROCESSES).")
  flags.DEFINE_integer(
    "process_id", None, "This process's index, 0 to num_processes - 1 (default: $JAX_PROCESS_ID)."
  )
  flags.DEFINE_integer(
    "heartbeat_timeout",
    100,
    "Seconds without a heartbeat after which a process of a "
    "multi-process run counts as dead and the others stop (exit 69).",
  )
  flags.DEFINE_integer(
    "initialization_timeout",
    300,
    "Seconds the processes of a multi-process run wait for each other to start.",
  )


def distributed_settings():
  """The parsed distributed flags (with their environment fallbacks), or one line."""
  from aigc_jax import distributed  # pylint: disable=import-outside-toplevel

  values = flags.FLAGS
  return run_reporting_user_errors(
    distributed.settings_from,
    auto=values.distributed,
    coordinator_address=values.coordinator_address,
    num_processes=values.num_processes,
    process_id=values.process_id,
    heartbeat_timeout_s=values.heartbeat_timeout,
    initialization_timeout_s=values.initialization_timeout,
  )


_SUPERVISED_ENV = "AIGC_JAX_SUPERVISED"


def start_distributed(settings) -> None:
  """Initialises JAX's distributed runtime if `settings` ask for it (see `supervise`)."""
  from aigc_jax import distributed  # pylint: disable=import-outside-toplevel

  run_reporting_user_errors(distributed.initialize, settings)


def supervise(settings) -> None:
  """Runs this same command as a child process and watches it; returns only in the child.

  JAX ends a process whose peer died with an abort (exit 134) and a page of C++ stack trace,
  or a process waits in a collective for the dead peer. Supervised, the user sees one line
  instead (`error: process 1 of 2: another process of this run died...`) and the exit code
  `distributed.EXIT_CODE_PEER_LOST` (69). SIGTERM and SIGINT are passed on to the child (which
  saves and exits 75); the child is killed if this process dies. Only multi-process runs are
  supervised; `AIGC_JAX_SUPERVISED` marks the child.
  """
  if not settings.requested or os.environ.get(_SUPERVISED_ENV):
    return
  from experiments import supervisor  # pylint: disable=import-outside-toplevel

  sys.exit(supervisor.run_child(settings, _SUPERVISED_ENV))
