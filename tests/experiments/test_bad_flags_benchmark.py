"""Bad flags of `experiments.hallucination_benchmark` and `experiments.digits28_variants`: each
is refused before any jax work with exit 2 and exactly one stderr line `error: ...`.

`{out}` is a new folder, `{file}` an existing file, `{workdir}` a training run's workdir.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARK = "experiments.hallucination_benchmark"
VARIANTS = "experiments.digits28_variants"

CASES = [
  # (module, arguments, words the line must hold)
  (BENCHMARK, ["--out={out}", "--steps=0"], "--steps"),
  (BENCHMARK, ["--out={out}", "--steps=-3"], "--steps"),
  (BENCHMARK, ["--out={out}", "--seeds=0"], "--seeds"),
  (BENCHMARK, ["--out={out}", "--protocol=pacgan", "--trials=0"], "--trials"),
  (BENCHMARK, ["--out={out}", "--protocol=pacgan", "--eval_every=-1"], "--eval_every"),
  (BENCHMARK, ["--out={out}", "--protocol=pacgan", "--pack_sizes=a,b"], "--pack_sizes"),
  (BENCHMARK, ["--out={out}", "--protocol=pacgan", "--pack_sizes=0"], "--pack_sizes"),
  (BENCHMARK, ["--out={out}", "--only=gaussian_ring8/gan_hnge"], "gaussian_ring8/gan_hinge"),
  (BENCHMARK, ["--out={out}", "--protocol=pacgan", "--only=pacgan7"], "pacgan7"),
  (BENCHMARK, ["--out={file}"], "is a file"),
  (BENCHMARK, ["--out={workdir}"], "training run"),
  (BENCHMARK, ["--out={out}", "--configs_dir=/nonexistent"], "--configs_dir"),
  (BENCHMARK, ["--out={out}", "--data_dir={file}"], "--data_dir"),
  (BENCHMARK, ["--out={out}", "extra"], "Unexpected arguments"),
  (BENCHMARK, ["--out={out}", "--trials=3"], "--protocol pacgan"),
  (BENCHMARK, ["--out={out}", "--protocol=pacgan", "--seeds=3"], "--trials"),
  (BENCHMARK, ["--out={out}", "--stpes=3"], "stpes"),
  (BENCHMARK, ["--out={out}", "--protocol=aithal", "--only=grid52"], "grid52"),
  (BENCHMARK, ["--out={out}", "--protocol=aithal", "--sizes=0"], "--sizes"),
  (BENCHMARK, ["--out={out}", "--samples=100"], "--protocol aithal"),
  (BENCHMARK, [], "--out"),
  (VARIANTS, ["--out={out}", "--gan_steps=0"], "--gan_steps"),
  (VARIANTS, ["--out={out}", "--num_samples=5"], "--num_samples"),
  (VARIANTS, ["--out={out}", "--only=gan_hnge_digits"], "gan_hinge_digits"),
  (VARIANTS, ["--out={file}"], "is a file"),
  (VARIANTS, ["--out={workdir}"], "training run"),
  (VARIANTS, ["--out={out}", "--data_dir={file}"], "--data_dir"),
  (VARIANTS, ["--out={out}", "extra"], "Unexpected arguments"),
  (VARIANTS, [], "--out"),
]


@pytest.mark.parametrize(
  "module, arguments, words", CASES, ids=[f"{m.split('.')[-1]}:{' '.join(a)}" for m, a, _ in CASES]
)
def test_bad_flag_is_one_line_and_exit_2(tmp_path, module, arguments, words):
  existing_file = tmp_path / "a_file"
  existing_file.write_text("not a folder")
  workdir = tmp_path / "train_run"
  (workdir / "checkpoints").mkdir(parents=True)
  (workdir / "config.json").write_text("{}")
  places = {"out": str(tmp_path / "out"), "file": str(existing_file), "workdir": str(workdir)}
  result = subprocess.run(
    [sys.executable, "-m", module] + [a.format(**places) for a in arguments],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  lines = result.stderr.splitlines()
  assert result.returncode == 2, result.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), lines
  assert words in lines[0]
  assert not (tmp_path / "out").exists()  # Refused before anything was written.
  assert (workdir / "config.json").read_text() == "{}"
