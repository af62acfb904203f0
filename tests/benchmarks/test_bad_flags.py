"""`python -m benchmarks.run` with a bad flag: one line `error: ...` on stderr and exit code 2,
before jax is imported (a stand-in `jax` package that fails on import is put first on the
path: a check that came after jax started would show its traceback instead)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Cheap values first: a bad flag that is wrongly accepted runs a few seconds, not 10 minutes.
CHEAP = ("--quick", "--only=eval", "--networks=mlp_vae")


@pytest.mark.parametrize(
  "flag,expected",
  [
    ("--only=stpes", "--only: unknown section 'stpes' (did you mean 'steps'?); valid: steps, "),
    ("--only=steps,evall", "unknown section 'evall'"),
    ("--only=", "--only names no section"),
    ("--networks=dcgan", "--networks: unknown network 'dcgan' (did you mean 'dcgan28'?)"),
    (
      "--diffusion_networks=ddpm_mpl",
      "--diffusion_networks: unknown diffusion network 'ddpm_mpl' (did you mean 'ddpm_mlp'?)",
    ),
    ("--cores=0", "--cores=0: this process may use"),
    ("--cores=100000", "--cores=100000: this process may use"),
    ("--rounds=0", "--rounds=0: must be an integer >= 1"),
    ("--matmul_size=-3", "--matmul_size=-3: must be an integer >= 1"),
    ("--round_seconds=0", "--round_seconds=0.0: must be a number of seconds above 0"),
    ("--round_seconds=nan", "--round_seconds=nan"),
    ("--rounds=many", "--rounds=many"),
    ("--parallel=jit", "--parallel=jit: value should be one of <auto|pmap|shard_map>"),
    ("--stpes=3", "Unknown command line flag 'stpes'"),
    ("stray", "Unexpected arguments: stray"),
    ("--data_dir={tmp}/missing", "/missing does not exist"),
    ("--output_dir={tmp}/a_file", "/a_file is a file, not a folder"),
  ],
)
def test_bad_flag_is_one_line_and_exit_2(tmp_path, flag, expected):
  (tmp_path / "a_file").write_text("")
  (tmp_path / "no_jax" / "jax").mkdir(parents=True)
  (tmp_path / "no_jax" / "jax" / "__init__.py").write_text(
    "raise ImportError('jax imported before the flags were checked')\n"
  )
  env = dict(os.environ, PYTHONPATH=str(tmp_path / "no_jax"))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.run",
      *CHEAP,
      f"--output_dir={tmp_path / 'out'}",
      flag.format(tmp=tmp_path),
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), lines[:5]
  assert expected in lines[0]
  assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")
