"""Name -> factory registries for everything a config names (models, datasets, families...)."""
from typing import Callable, Dict, Generic, Iterable, TypeVar

from aigc_jax.errors import UnknownNameError

T = TypeVar("T")


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
    def decorator(entry: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is already registered.")
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
