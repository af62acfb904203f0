"""Registries: the same definition registered twice is harmless; another one under a taken
name is a one-line error naming both."""

import importlib.util

import pytest

from aigc_jax.errors import ConfigError
from aigc_jax.registry import NameTakenError, Registry

_VARIANT = '''
def laplace(scale):
  return ("laplace", scale)
'''


def _load(path, module_name):
  """Executes the file `path` as a module called `module_name` (a second import of it)."""
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_same_object_twice_is_harmless():
  registry = Registry("likelihood")

  def laplace(scale):
    return scale

  registry.register("laplace")(laplace)
  registry.register("laplace")(laplace)
  assert registry.get("laplace") is laplace and registry.names() == ["laplace"]


def test_one_file_imported_under_two_module_names_is_harmless(tmp_path):
  """`my_project.laplace` and `laplace` (both folders on sys.path): one definition."""
  path = tmp_path / "laplace.py"
  path.write_text(_VARIANT)
  first, second = _load(path, "my_project.laplace"), _load(path, "laplace")
  assert first.laplace is not second.laplace
  registry = Registry("likelihood")
  registry.register("laplace")(first.laplace)
  registry.register("laplace")(second.laplace)
  assert registry.get("laplace") is second.laplace  # The newest: a reload's code is used.


def test_another_definition_under_a_taken_name_is_one_line_naming_both(tmp_path):
  (tmp_path / "mine").mkdir()
  (tmp_path / "theirs").mkdir()
  (tmp_path / "mine" / "laplace.py").write_text(_VARIANT)
  (tmp_path / "theirs" / "laplace.py").write_text(_VARIANT)  # Same code, another file.
  mine = _load(tmp_path / "mine" / "laplace.py", "mine.laplace")
  theirs = _load(tmp_path / "theirs" / "laplace.py", "theirs.laplace")
  registry = Registry("likelihood")
  registry.register("laplace")(mine.laplace)
  with pytest.raises(NameTakenError) as info:
    registry.register("laplace")(theirs.laplace)
  message = str(info.value)
  assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
  assert "\n" not in message
  assert message.startswith("likelihood 'laplace' is already registered by mine.laplace.laplace (")
  assert str(tmp_path / "mine" / "laplace.py") in message
  assert "theirs.laplace.laplace (" in message and "register it under another name" in message
  assert registry.get("laplace") is mine.laplace  # The first one keeps the name.


def test_two_objects_that_are_not_definitions_under_one_name_are_refused():
  registry = Registry("GAN loss")
  registry.register("hinge")(("a",))
  with pytest.raises(NameTakenError, match="GAN loss 'hinge' is already registered"):
    registry.register("hinge")(("b",))
