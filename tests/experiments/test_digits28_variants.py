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
  (tmp_path / "results.json").write_text(json.dumps(
      {"gan_steps": 500, "num_samples": 2000, "rows": rows}))
  result = subprocess.run([sys.executable, "-c", SNIPPET, str(tmp_path),
                           str(tmp_path / "empty")], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=300)
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["same_budget"] == [rows[0]]  # b is rerun: its old row goes.
  assert out["other_budget"] == [] and out["no_file"] == []  # Never mix budgets.
  assert {"wgan_gp_digits", "cvae_digits", "ae_digits"} <= set(out["variants"])
  assert "classifier_digits" not in out["variants"]
