"""`experiments.evaluate` with the flags a careless user passes: each is refused with exit
code 2 and one line `error: ...` before any work (no jax, no checkpoint read, nothing written)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  """{name: path}: look-alike runs (checkpoints/ and config.json, no arrays: every check here
  must come before a checkpoint is read), an empty folder and a file."""
  root = tmp_path_factory.mktemp("bad_flags")
  paths = {
    "empty": root / "empty",
    "file": root / "file.txt",
    "run": root / "run",
    "classifier": root / "classifier",
  }
  paths["empty"].mkdir()
  paths["file"].write_text("not a run")
  for name, family in (("run", "vae"), ("classifier", "classifier")):
    (paths[name] / "checkpoints").mkdir(parents=True)
    (paths[name] / "config.json").write_text(json.dumps({"model": {"family": family}}))
  return {name: str(path) for name, path in paths.items()}


# (test id, flags with {folder} placeholders, words the one line must hold)
BAD_FLAGS = [
  ("no_workdir", [], "--workdir"),
  ("empty_workdir", ["--workdir="], "--workdir is empty"),
  ("missing_workdir", ["--workdir={empty}/nothing"], "does not exist"),
  ("workdir_is_a_file", ["--workdir={file}"], "is a file, not a folder"),
  ("workdir_is_not_a_run", ["--workdir={empty}"], "is not a training run"),
  ("workdir_is_a_classifier", ["--workdir={classifier}"], "evaluates generative models only"),
  ("zero_num_samples", ["--workdir={run}", "--num_samples=0"], "--num_samples=0"),
  ("negative_num_samples", ["--workdir={run}", "--num_samples=-5"], "--num_samples=-5"),
  ("text_num_samples", ["--workdir={run}", "--num_samples=many"], "--num_samples"),
  ("negative_seed", ["--workdir={run}", "--seed=-1"], "--seed=-1"),
  ("huge_seed", ["--workdir={run}", "--seed=4294967296"], "--seed=4294967296"),
  ("negative_step", ["--workdir={run}", "--step=-1"], "--step=-1"),
  (
    "empty_classifier_workdir",
    ["--workdir={run}", "--classifier_workdir="],
    "--classifier_workdir is empty",
  ),
  (
    "missing_data_dir",
    ["--workdir={run}", "--data_dir={empty}/nothing"],
    "--data_dir {empty}/nothing does not exist",
  ),
  ("empty_eval_dir", ["--workdir={run}", "--eval_dir="], "--eval_dir is empty"),
  ("eval_dir_is_a_file", ["--workdir={run}", "--eval_dir={file}"], "--eval_dir {file} is a file"),
  ("unknown_flag", ["--workdir={run}", "--num_sample=200"], "num_sample"),
  ("positional_argument", ["--workdir={run}", "200"], "Unexpected arguments: 200"),
  ("zero_processes", ["--workdir={run}", "--num_processes=0"], "--num_processes"),
]


@pytest.mark.parametrize(
  "flags,words", [(f, w) for _, f, w in BAD_FLAGS], ids=[i for i, _, _ in BAD_FLAGS]
)
def test_bad_flag_is_one_line_and_exit_2(folders, flags, words):
  before = {name: sorted(os.listdir(path)) for name, path in folders.items() if os.path.isdir(path)}
  result = subprocess.run(
    [sys.executable, "-m", "experiments.evaluate", *[f.format(**folders) for f in flags]],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
  assert words.format(**folders) in lines[0], lines[0]
  assert {
    name: sorted(os.listdir(path)) for name, path in folders.items() if os.path.isdir(path)
  } == before  # Nothing written (no eval/ folder).
