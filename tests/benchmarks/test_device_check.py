"""`benchmarks/device_check.sh` parses, and every test file and module it names exists (the
script itself is run by hand on a GPU machine, or here with DEVICE_CHECK_CPU=1)."""

import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "device_check.sh")


def _text():
  with open(SCRIPT, encoding="utf-8") as f:
    return f.read()


def test_the_script_parses_and_stops_on_errors():
  subprocess.run(["bash", "-n", SCRIPT], check=True)
  assert "set -euo pipefail" in _text()


def test_every_test_file_and_module_it_names_exists():
  text = _text()
  tests = re.search(r"TESTS=\((.*?)\)", text, re.S).group(1).split()
  assert tests, "the script names no tests"
  for path in tests:
    assert os.path.isfile(os.path.join(REPO, path)), path
  modules = set(re.findall(r"-m ((?:benchmarks|experiments)\.[a-z_.]+)", text))
  assert modules == {"benchmarks.run", "experiments.hallucination_benchmark"}
  for module in modules:
    assert os.path.isfile(os.path.join(REPO, *module.split(".")) + ".py"), module
