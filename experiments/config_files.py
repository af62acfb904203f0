"""What `--config` accepts, and one line for everything else.

Either a config file `path.py[:argument]` whose `get_config([argument])` returns an
`ml_collections.ConfigDict` that starts from `experiments/configs/base.py`, or a run's saved
`config.json` (a natural way to reuse a run's settings: `--config runs/demo/config.json`).
Overrides (`--config.a.b=value`) apply to either. A file that cannot give such a config (a
syntax error, an exception, a dict instead of a ConfigDict, missing keys, a bad `:argument`)
raises `ConfigFileError`, whose message is the one line the CLI prints.

ml_collections' own loader turns these into tracebacks (or a traceback flattened into the
message) and reads a `.json` file as Python (`NameError: name 'true' is not defined`).
"""

import importlib.util
import inspect
import json
import os
import sys
import traceback

import ml_collections
from absl import flags

from aigc_jax import config_rules
from experiments.configs import base

_BASE = "experiments/configs/base.py"
_MODULE = "config_config"  # The name ml_collections gives the loaded config file.


class ConfigFileError(Exception):
  """A `--config` that gives no usable config; the message is one line saying why."""


def load(spec: str) -> ml_collections.ConfigDict:
  """`path.py[:argument]` or `path/config.json` -> the config, checked for base's keys."""
  path, colon, argument = spec.partition(":")
  if path.endswith(".json"):
    if colon:
      raise ConfigFileError(f"--config {spec}: a run's config.json takes no ':{argument}'.")
    config = _load_json(path)
  elif path.endswith(".py"):
    config = _load_python(path, argument if colon else None)
  else:
    raise ConfigFileError(
      f"--config {path} is neither a config file (.py) nor a run's config.json."
    )
  _check_complete(config, path)
  return config


def _load_json(path: str) -> ml_collections.ConfigDict:
  try:
    with open(path, encoding="utf-8") as f:
      tree = json.load(f)
  except json.JSONDecodeError as e:
    raise ConfigFileError(
      f"The config {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})."
    ) from None
  except (OSError, UnicodeDecodeError) as e:
    raise ConfigFileError(f"Cannot read the config {path} ({e}).") from None
  if not isinstance(tree, dict):
    raise ConfigFileError(
      f"The config {path} holds a JSON {type(tree).__name__}, not the "
      "object of a run's config.json."
    )
  return config_rules.config_from_json(tree)


def _where(error: BaseException, path: str) -> str:
  """` at line N of <path>` of the last traceback frame in `path` (else the last frame)."""
  frames = traceback.extract_tb(error.__traceback__)
  if not frames:
    return ""
  inside = [f for f in frames if os.path.realpath(f.filename) == os.path.realpath(path)]
  frame = (inside or frames)[-1]
  return f" at line {frame.lineno} of {frame.filename}"


def _load_python(path: str, argument):
  module_spec = importlib.util.spec_from_file_location(_MODULE, path)
  module = importlib.util.module_from_spec(module_spec)
  sys.modules[_MODULE] = module  # As ml_collections does; dataclasses in the file need it.
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigFileError(
      f"The config file {path} does not load: syntax error at line "
      f"{e.lineno} of {e.filename}: {e.msg}."
    ) from None
  except Exception as e:  # pylint: disable=broad-except  # Whatever the user's file raised.
    raise ConfigFileError(
      f"The config file {path} does not load: {type(e).__name__}: {e}{_where(e, path)}."
    ) from None
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ConfigFileError(
      f"The config file {path} has no get_config() function; a config file defines "
      "get_config() returning an ml_collections.ConfigDict (see "
      "experiments/configs/vae_digits.py)."
    )
  args = () if argument is None else (argument,)
  call = f"get_config({argument!r})" if args else "get_config()"
  try:
    inspect.signature(get_config).bind(*args)
  except TypeError:
    if args:
      raise ConfigFileError(
        f"The config file {path} takes no ':{argument}' (its get_config() has no argument)."
      ) from None
    raise ConfigFileError(
      f"The config file {path} needs an argument: pass --config "
      f"{path}:<value> (see the file's docstring)."
    ) from None
  except ValueError:  # No signature to read (a builtin): let the call say.
    pass
  try:
    config = get_config(*args)
  except Exception as e:  # pylint: disable=broad-except
    hint = "; see the file's docstring for the arguments it takes" if args else ""
    raise ConfigFileError(
      f"{call} of {path} failed: {type(e).__name__}: {e}{_where(e, path)}{hint}."
    ) from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigFileError(
      f"{call} of {path} returned {type(config).__name__ if config is not None else 'None'}"
      ", not an ml_collections.ConfigDict; start from the base config "
      f"(config = base.get_base_config() of {_BASE}) and return it."
    )
  return config


def _check_complete(config: ml_collections.ConfigDict, path: str) -> None:
  missing = config_rules.missing_keys(config, base.get_base_config())
  if missing:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    raise ConfigFileError(
      f"The config from {path} lacks the key{'s' if len(missing) > 1 else ''} {shown}: a "
      f"config must start from {_BASE} (config = base.get_base_config(), then change what "
      "differs)."
    )


class Parser(flags.ArgumentParser):
  """The parser of ml_collections' `--config` flag, loading through `load`; the config is
  locked, as ml_collections locks it, so that an override of a missing key is an error."""

  def parse(self, argument):
    return load(argument).lock()

  def flag_type(self):
    return "config object"
