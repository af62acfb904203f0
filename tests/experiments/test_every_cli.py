"""Every entry point of the project against the same table of careless command lines: a
stray argument, an unknown flag, a malformed number, and --help.

Each command's own table of bad values is in the test file beside it (test_bad_flags_train.py,
test_bad_flags_evaluate.py, test_bad_flags_benchmark.py, tests/benchmarks/test_bad_flags.py);
this one checks that none of them was left out of the shared rules.
"""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Each command with the flags it requires (a value that passes its own checks), and one of
# its integer flags.
COMMANDS = {
  "experiments.train": (["--workdir={tmp}/run"], "--config.train.num_steps"),
  "experiments.evaluate": (["--workdir={tmp}/run"], "--num_samples"),
  "experiments.hallucination_benchmark": (["--out={tmp}/out"], "--steps"),
  "experiments.digits28_variants": (["--out={tmp}/out"], "--gan_steps"),
  "benchmarks.run": (["--output_dir={tmp}/out"], "--rounds"),
  "benchmarks.profile_step": ([], "--steps"),
  "benchmarks.checkpoint_overhead": ([], "--num_steps"),
  "benchmarks.default_job": (["--output_dir={tmp}/out"], "--rounds"),
}
# What is given, and what the one line must name (so that another error cannot pass for it).
BAD = {
  "stray argument": lambda integer_flag: (["stray"], "stray"),
  "unknown flag": lambda integer_flag: (["--no_such_flag=1"], "no_such_flag"),
  "malformed number": lambda integer_flag: ([f"{integer_flag}=12x"], "12x"),
  "negative number": lambda integer_flag: (
    [f"{integer_flag}=-3"],
    integer_flag.rsplit(".", 1)[-1].lstrip("-"),
  ),
}


def _run(tmp_path, module, args):
  required, _ = COMMANDS[module]
  args = [a.format(tmp=tmp_path) for a in required + args]
  return subprocess.run(
    [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=300
  )


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_careless_command_line_is_one_line_and_exit_2(tmp_path, module, bad):
  args, named = BAD[bad](COMMANDS[module][1])
  result = _run(tmp_path, module, args)
  assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), lines[:5]
  assert named in lines[0], lines[0]
  assert not os.path.exists(tmp_path / "run") and not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_help_is_exit_0(tmp_path, module):
  """absl exits 1 after printing --help, which scripts read as a failure."""
  result = _run(tmp_path, module, ["--help"])
  assert result.returncode == 0, result.stderr[-2000:]
  assert "--" in result.stdout + result.stderr
