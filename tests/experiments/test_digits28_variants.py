"""`experiments.digits28_variants --only`: adds or replaces its rows, keeps the others.

Run in a subprocess: the script defines absl flags (`--out`, required) that must not enter the
test process's flag registry.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SNIPPET = """
import json, sys
from experiments import digits28_variants as d
print(json.dumps({
    "same_budget": d._rows_of_other_variants(sys.argv[1], {"b_digits"}, 500, 2000),
    "other_budget": d._rows_of_other_variants(sys.argv[1], {"b_digits"}, 400, 2000),
    "no_file": d._rows_of_other_variants(sys.argv[2], {"b_digits"}, 500, 2000),
    "variants": sorted(d.variant_configs()),
}))
"""


def test_only_keeps_the_rows_of_other_variants_at_the_same_budget(tmp_path):
  rows = [{"config": "a_digits", "fid": 1.0}, {"config": "b_digits", "fid": 2.0}]
  (tmp_path / "results.json").write_text(
    json.dumps({"gan_steps": 500, "num_samples": 2000, "rows": rows})
  )
  result = subprocess.run(
    [sys.executable, "-c", SNIPPET, str(tmp_path), str(tmp_path / "empty")],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
    timeout=300,
  )
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["same_budget"] == [rows[0]]  # b is rerun: its old row goes.
  assert out["other_budget"] == [] and out["no_file"] == []  # Never mix budgets.
  assert {"wgan_gp_digits", "cvae_digits", "ae_digits"} <= set(out["variants"])
  assert "classifier_digits" not in out["variants"]


def _variants(*arguments):
  return subprocess.run(
    [sys.executable, "-m", "experiments.digits28_variants", *arguments],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )


def test_a_run_trained_further_than_this_budget_is_refused_before_any_work(tmp_path):
  (tmp_path / "gan_digits" / "checkpoints" / "500").mkdir(parents=True)
  result = _variants(f"--out={tmp_path}", "--only=gan_digits", "--gan_steps=400")
  lines = result.stderr.splitlines()
  assert result.returncode == 2, result.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith("error: ") and "--gan_steps=500" in lines[0]
  assert sorted(os.listdir(tmp_path)) == ["gan_digits"]  # No classifier, no tfds folder.


RERUN_SNIPPET = """
import json, sys
import ml_collections
from aigc_jax import training
from experiments import digits28_variants as d
def trained(config, workdir):
  print("trained", workdir)
training.train_and_evaluate = trained
config = ml_collections.ConfigDict({"train": {"num_steps": 1500}})
d._train_unless_finished(config, sys.argv[1])  # Finished: reused.
d._train_unless_finished(config, sys.argv[2])  # Interrupted at 700: resumed.
print(json.dumps(d.interrupted(sys.argv[3])))
"""


def test_finished_runs_are_reused_and_interrupted_ones_resumed(tmp_path):
  """A rerun does not pass finished runs to the training loop (whose note names
  --config.train.num_steps, a flag this command does not have); the classifier of an
  interrupted run is trained on, not used half-trained; Ctrl-C says what was saved."""
  (tmp_path / "done" / "checkpoints" / "1500").mkdir(parents=True)
  (tmp_path / "half" / "checkpoints" / "700").mkdir(parents=True)
  (tmp_path / "results.json").write_text(
    json.dumps({"gan_steps": 400, "num_samples": 2000, "rows": [{"config": "vae_digits"}]})
  )
  result = subprocess.run(
    [
      sys.executable,
      "-c",
      RERUN_SNIPPET,
      str(tmp_path / "done"),
      str(tmp_path / "half"),
      str(tmp_path),
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
    timeout=300,
  )
  lines = result.stdout.strip().splitlines()
  assert "reused" in lines[0] and "--config" not in lines[0]
  assert lines[1] == f"trained {tmp_path / 'half'}"
  message, code = json.loads(lines[-1])
  assert code == 75 and "vae_digits" in message and "nothing" not in message
