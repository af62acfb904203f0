"""`python -m benchmarks.run` as a user runs it: results files never overwritten, Ctrl-C keeps
the finished sections, and a console without library INFO logs."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from benchmarks import run, timing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# One device, as a user's CPU run has (tests/conftest.py forces 8 for the tests' own jax).
ENV = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")


def _start(*args):
  return subprocess.Popen(
    [sys.executable, "-m", "benchmarks.run", *args],
    cwd=REPO,
    env=ENV,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
    start_new_session=True,
  )  # Its own group, as a terminal's Ctrl-C.


def test_a_second_run_on_the_same_day_keeps_the_first_ones_files(tmp_path):
  results = {"machine": timing.machine_stamp(), "options": {}, "sections_finished": []}
  first = run.write_results(results, str(tmp_path), quick=True)
  with open(first[0]) as f:
    first_json = f.read()
  results["machine"]["load_average_at_start"] = [9.0, 9.0, 9.0]  # Another run's numbers.
  second = run.write_results(results, str(tmp_path), quick=True)
  third = run.write_results(results, str(tmp_path), quick=True)
  assert second[0] == first[0][: -len(".json")] + "-2.json"
  assert second[1] == first[1][: -len(".md")] + "-2.md"
  assert third[0].endswith("-quick-3.json")
  with open(first[0]) as f:
    assert f.read() == first_json
  with open(second[0]) as f:
    assert json.load(f)["machine"]["load_average_at_start"] == [9.0, 9.0, 9.0]
  assert len(os.listdir(tmp_path)) == 6


def test_ctrl_c_after_a_section_saves_it_marked_as_interrupted(tmp_path):
  process = _start(
    "--quick", "--only=eval,scaling", "--networks=mlp_vae", f"--output_dir={tmp_path}"
  )
  lines = []
  for line in process.stderr:  # "benchmarks: eval done in 1.2 s", then scaling starts.
    lines.append(line.rstrip("\n"))
    if line.startswith("benchmarks: eval done"):
      break
  time.sleep(0.5)  # Inside the scaling section (its first child process takes seconds).
  os.killpg(process.pid, signal.SIGINT)
  lines += process.stderr.read().splitlines()
  assert process.wait(timeout=60) == 75, lines
  assert lines[0].startswith("benchmarks: eval done") and len(lines) == 2, lines
  (json_name,) = [n for n in os.listdir(tmp_path) if n.endswith(".json")]
  assert json_name.endswith("-quick-interrupted.json")
  assert lines[1] == (
    f"Interrupted by SIGINT: saved the finished sections (eval) to {tmp_path / json_name} "
    f"and {tmp_path / json_name[:-5]}.md; run the rest with --only=scaling."
  )
  with open(tmp_path / json_name) as f:
    saved = json.load(f)
  assert saved["interrupted"] == {"signal": "SIGINT", "sections_not_run": ["scaling"]}
  assert saved["sections_finished"] == ["eval"] and "scaling" not in saved
  assert saved["eval"]["ssim"]["num_images"] == 1000
  with open(tmp_path / (json_name[:-5] + ".md")) as f:
    assert (
      "**Interrupted by SIGINT**: partial results. Finished: eval; not run: scaling." in f.read()
    )


def test_ctrl_c_before_any_section_finished_is_one_line_and_130(tmp_path):
  process = _start("--quick", "--only=scaling", "--networks=mlp_vae", f"--output_dir={tmp_path}")
  time.sleep(1.0)  # Importing jax, or starting the first child: scaling takes far longer.
  os.killpg(process.pid, signal.SIGINT)
  stderr = process.stderr.read()
  assert process.wait(timeout=60) == 130
  assert stderr.splitlines() == [
    "Interrupted by SIGINT before any section finished; nothing was saved."
  ], stderr[-3000:]
  assert os.listdir(tmp_path) == []


def test_quick_run_has_no_library_info_logs(tmp_path):
  """The loop section checkpoints with orbax, which logs about 260 INFO lines unquieted."""
  (tmp_path / "tfds").mkdir()
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.run",
      "--quick",
      "--only=loop",
      "--networks=mlp_vae",
      "--rounds=1",
      "--round_seconds=0.01",
      f"--data_dir={tmp_path / 'tfds'}",
      f"--output_dir={tmp_path / 'out'}",
    ],
    cwd=REPO,
    env=ENV,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  absl_lines = [l for l in re.split(r"[\r\n]", result.stderr) if re.match(r"[IWE]\d{4} ", l)]
  assert absl_lines == []
  # What is left: the dataset's first use, the loop's progress bar and the section's line.
  others = [
    l
    for l in re.split(r"[\r\n]", result.stderr)
    if l.strip() and not l.startswith("vae on digits28: ")
  ]
  assert len(others) == 2 and others[0].startswith("Preparing digits/28x28 in "), others[:5]
  assert others[1].startswith("benchmarks: loop done in "), others
  (json_name,) = [n for n in os.listdir(tmp_path / "out") if n.endswith(".json")]
  assert result.stdout.splitlines()[-1] == (
    f"Wrote {tmp_path / 'out' / json_name} and {tmp_path / 'out' / json_name[:-5]}.md"
  )
  assert "Outputs in" not in result.stdout  # The loop's summary names a deleted temp folder.
