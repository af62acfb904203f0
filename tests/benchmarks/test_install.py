"""`pip install -e .` installs the harness: `python -m benchmarks.run` works outside the
repository, as `experiments.train` does."""

import configparser
import os
import subprocess
import sys

import pytest
import setuptools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_setup_cfg_packages_include_the_harness():
  setup = configparser.ConfigParser()
  setup.read(os.path.join(REPO, "setup.cfg"))
  include = setup["options.packages.find"]["include"].split()
  packages = setuptools.find_packages(REPO, include=include)
  assert {"benchmarks", "aigc_jax", "experiments"} <= set(packages)
  assert not any(p.startswith("tests") for p in packages)


def _installed_from_here() -> bool:
  """Whether the installed aigc-jax is this checkout (run from outside the repository, the
  import can only come from the install)."""
  probe = subprocess.run(
    [sys.executable, "-c", "import aigc_jax; print(aigc_jax.__file__)"],
    cwd="/",
    capture_output=True,
    text=True,
    check=False,
  )
  return probe.returncode == 0 and probe.stdout.startswith(os.path.join(REPO, ""))


def test_help_works_outside_the_repository(tmp_path):
  if not _installed_from_here():
    pytest.skip("aigc-jax is not installed from this checkout (pip install -e . here)")
  result = subprocess.run(
    [sys.executable, "-m", "benchmarks.run", "--help"],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert "No module named" not in result.stderr, result.stderr[-2000:]
  assert "The benchmark harness: how fast the reference networks" in result.stdout
  assert "--output_dir" in result.stdout
