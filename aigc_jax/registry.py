"""Name -> factory registries for everything a config names (models, datasets, families...)."""

import inspect
import os
from typing import Callable, Dict, Generic, Iterable, Optional, Tuple, TypeVar

from aigc_jax.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class NameTakenError(ConfigError):
  """A registration under a name that another definition already holds."""


def _definition(entry) -> Optional[Tuple[str, str]]:
  """(qualified name, real path of the defining file) of a function or class, else None."""
  qualname = getattr(entry, "__qualname__", None)
  try:
    path = inspect.getsourcefile(entry) or inspect.getfile(entry)
  except TypeError:  # A builtin, an instance, a functools.partial: no file to compare.
    return None
  return None if qualname is None else (qualname, os.path.realpath(path))


def same_definition(a, b) -> bool:
  """Whether `a` and `b` are one definition: the same object, or the same qualified name in
  the same file.

  The file, not the module name, because the common second registration is one file imported
  under two names (`my_project.laplace` and `laplace` when both folders are on sys.path, a
  script run as `__main__` and imported by name, an `importlib.reload`): two objects, one
  definition. Two files that define a factory of the same name are two definitions.
  """
  if a is b:
    return True
  definition = _definition(a)
  return definition is not None and definition == _definition(b)


def _describe(entry) -> str:
  """`module.qualname (file)` of a function or class, for messages."""
  definition = _definition(entry)
  name = f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', repr(entry))}"
  return f"{name} ({definition[1]})" if definition else name


def unknown_name_message(kind: str, name: object, choices: Iterable[str]) -> str:
  """One sentence: what was asked for, and what could have been asked for."""
  return f"Unknown {kind} {name!r}; valid choices are: {', '.join(sorted(choices))}."


class Registry(Generic[T]):
  """A dict from name to entry that fails with the list of valid names.

  Example:
    BODIES = Registry[type]("model body")
    @BODIES.register("mlp")
    class MLPBody: ...
  """

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: Dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    """A decorator that registers its function or class under `name`.

    Registering the same definition again (see `same_definition`) is harmless: the newest
    object is kept, so a reloaded module's code is the one used. Another definition under a
    taken name raises NameTakenError (a ConfigError, one line naming both).
    """

    def decorator(entry: T) -> T:
      if name in self._entries and not same_definition(self._entries[name], entry):
        raise NameTakenError(
          f"{self.kind} {name!r} is already registered by {_describe(self._entries[name])}; "
          f"{_describe(entry)} cannot take the name too: register it under another name."
        )
      self._entries[name] = entry
      return entry

    return decorator

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise UnknownNameError(unknown_name_message(self.kind, name, self._entries))
    return self._entries[name]

  def names(self) -> list:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
