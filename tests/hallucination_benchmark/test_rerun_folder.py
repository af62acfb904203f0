"""Reruns into one `--out` folder: a rerun with other flags is refused before any training and
loses nothing; `--overwrite` moves the old files aside; the tables hold every finished setting
in the folder, not only this invocation's `--only`; Ctrl-C says what was saved.

The CLI runs are the cheapest there are: the quick budget's 300 samples, one seed, 2 steps of
the ring's GAN, and DiffAugment's "n/a" row (nothing to train).
"""

import csv
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from aigc_jax.errors import UserError
from aigc_jax.hallucination_benchmark import folder, protocols, runner
from aigc_jax.hallucination_benchmark.settings import Setting

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
ENV = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
TINY = ["--quick", "--seeds=1", "--steps=2"]


def _benchmark(out, *arguments):
  return subprocess.run(
    [sys.executable, "-m", "experiments.hallucination_benchmark", f"--out={out}", *arguments],
    cwd=ROOT,
    env=ENV,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )


def _settings_of(results_csv):
  with open(results_csv, encoding="utf-8") as f:
    return {(r["dataset"], r["setting"]) for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def folder_with_gan(tmp_path_factory):
  out = tmp_path_factory.mktemp("rerun") / "hb"
  result = _benchmark(out, "--only=gaussian_ring8/gan", *TINY)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "training 1 seed for 2 steps" in result.stdout  # Not "1 seeds".
  return out


def test_a_rerun_with_other_steps_is_refused_and_keeps_the_saved_setting(folder_with_gan):
  out = folder_with_gan
  saved = (out / "settings" / "gaussian_ring8__gan.json").read_bytes()
  tables = (out / "results.md").read_bytes()
  result = _benchmark(out, "--only=gaussian_ring8/gan", "--quick", "--seeds=1", "--steps=3")
  lines = result.stderr.splitlines()
  assert result.returncode == 2, result.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), lines
  assert "gaussian_ring8__gan.json" in lines[0] and "steps 2 -> 3" in lines[0]
  assert "--overwrite" in lines[0]
  assert (out / "settings" / "gaussian_ring8__gan.json").read_bytes() == saved
  assert (out / "results.md").read_bytes() == tables
  assert "training" not in result.stdout  # Refused before any work.


def test_tables_hold_every_finished_setting_not_only_this_runs(folder_with_gan):
  out = folder_with_gan
  result = _benchmark(out, "--only=gaussian_ring8/gan_diffaug", *TINY)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = _settings_of(out / "results.csv")
  assert {("gaussian_ring8", "gan"), ("gaussian_ring8", "gan_diffaug")} <= rows
  markdown = (out / "results.md").read_text()
  assert "| gan |" in markdown and "| gan_diffaug |" in markdown
  assert os.path.getsize(out / "figures" / "samples_gaussian_ring8.png") > 0  # The GAN's.


def _setting(name="gan", steps=2, seeds=(0,)):
  config = ml_collections.ConfigDict(
    {"model": {"family": "gan"}, "train": {"num_steps": steps, "batch_size": 8}}
  )
  return Setting(
    dataset="gaussian_ring8",
    name=name,
    family="gan",
    variant="",
    knobs={},
    config=config,
    seeds=tuple(seeds),
    checkpoints=(1, steps),
  )


def _plan(*settings, quick=True):
  return protocols.Plan(
    "standard",
    quick,
    tuple(settings),
    {d: 300 if quick else 1000 for d in protocols.STANDARD_DATASETS},
  )


def _save(out_dir, setting, plan):
  record = {
    "fingerprint": setting.fingerprint(),
    "unavailable": "",
    **runner._run_info(plan, setting.dataset),  # pylint: disable=protected-access
    "setting": runner._setting_info(setting),
  }  # pylint: disable=protected-access
  runner._save(str(out_dir), setting, record)  # pylint: disable=protected-access
  (out_dir / "settings" / "gaussian_ring8__gan.npz").write_bytes(b"samples")


def test_conflicts_name_what_differs(tmp_path):
  plan = _plan(_setting())
  _save(tmp_path, _setting(), plan)
  assert runner.conflicts(plan, str(tmp_path)) == []
  assert runner.conflicts(_plan(_setting(steps=60)), str(tmp_path)) == [
    ("gaussian_ring8__gan", "steps 2 -> 60")
  ]
  assert runner.conflicts(_plan(_setting(seeds=(0, 1, 2))), str(tmp_path)) == [
    ("gaussian_ring8__gan", "seeds 1 -> 3")
  ]
  # Another kind of run conflicts even where it names other settings: its tables would drop
  # this one.
  assert runner.conflicts(_plan(_setting("gan_hinge"), quick=False), str(tmp_path)) == [
    ("gaussian_ring8__gan", "--quick on -> off, samples 300 -> 1000")
  ]


def test_overwrite_moves_the_old_files_aside_and_refusal_moves_nothing(tmp_path):
  _save(tmp_path, _setting(), _plan(_setting()))
  other = _plan(_setting(steps=60))
  with pytest.raises(UserError, match="--overwrite"):
    runner.check_folder(other, str(tmp_path), overwrite=False, progress=lambda _: None)
  assert folder.saved_stems(str(tmp_path)) == ["gaussian_ring8__gan"]
  messages = []
  runner.check_folder(other, str(tmp_path), overwrite=True, progress=messages.append)
  assert folder.saved_stems(str(tmp_path)) == []
  (moved,) = (tmp_path / "settings" / "replaced").iterdir()
  assert sorted(p.name for p in moved.iterdir()) == [
    "gaussian_ring8__gan.json",
    "gaussian_ring8__gan.npz",
  ]
  assert str(moved) in messages[0]


def test_a_saved_setting_outside_the_plan_is_a_row_of_the_tables(tmp_path):
  _save(tmp_path, _setting(), _plan(_setting()))
  tables_plan, records = runner.folder_plan(_plan(_setting("gan_hinge")), str(tmp_path))
  assert [s.name for s in tables_plan.settings] == ["gan", "gan_hinge"]
  assert tables_plan.settings[0].fingerprint() == _setting().fingerprint()
  assert set(records) == {"gaussian_ring8/gan"}


def test_ctrl_c_says_what_was_saved(tmp_path):
  message, code = folder.interrupted(str(tmp_path))
  assert code == 130 and "nothing was saved" in message
  _save(tmp_path, _setting(), _plan(_setting()))
  message, code = folder.interrupted(str(tmp_path))
  assert code == 75 and "nothing" not in message
  assert "1 finished setting under" in message and "again to resume" in message


SNIPPET = """
import sys
from absl import flags
from experiments import hallucination_benchmark as hb
flags.FLAGS(["hb", "--out", sys.argv[1]])
def interrupted():
  raise KeyboardInterrupt
hb.run = interrupted
hb.run_interruptible()
"""


def test_ctrl_c_of_the_cli_after_a_setting_was_saved_is_75_and_one_line(tmp_path):
  _save(tmp_path, _setting(), _plan(_setting()))
  result = subprocess.run(
    [sys.executable, "-c", SNIPPET, str(tmp_path)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert result.returncode == 75, result.stderr[-2000:]
  (line,) = result.stderr.splitlines()
  assert os.path.join(str(tmp_path), "settings") in line and "nothing" not in line


def test_a_finished_classifier_is_loaded_without_the_training_loops_note(tmp_path, monkeypatch):
  """A rerun reuses the shapes classifier; the training loop would print "pass a larger
  --config.train.num_steps", a flag the benchmark does not have."""
  (tmp_path / folder.CLASSIFIER_DIR / "checkpoints" / "60").mkdir(parents=True)
  loaded = []
  from aigc_jax import inference, training  # pylint: disable=import-outside-toplevel

  monkeypatch.setattr(
    inference,
    "load_classifier",
    lambda workdir, **kwargs: loaded.append((workdir, kwargs)) or "state",
  )
  monkeypatch.setattr(
    runner.ClassifierFeatureExtractor, "from_state", lambda state: {"state": "extractor"}[state]
  )
  monkeypatch.setattr(
    training,
    "train_and_evaluate",
    lambda *a, **k: pytest.fail("the finished classifier was trained again"),
  )
  config = ml_collections.ConfigDict({"train": {"num_steps": 60}, "dataset": {}})
  messages = []
  assert runner.shapes_classifier(str(tmp_path), config, None, messages.append) == "extractor"
  assert loaded[0][1]["step"] == 60
  assert "reused" in messages[0] and "--config" not in messages[0]


def test_a_setting_measured_under_the_old_names_is_refused_in_one_line(tmp_path):
  """A settings/*.json of the first measurement layer (keys `manifold_k3_train`,
  `unrecognisable`..., no "measurement" version) is never mixed with this version's rows:
  the run is refused in one line, and --overwrite moves it aside to be retrained."""
  plan = _plan(_setting())
  _save(tmp_path, _setting(), plan)
  path = tmp_path / "settings" / "gaussian_ring8__gan.json"
  record = json.loads(path.read_text())
  del record["measurement"]
  record["checkpoints"] = {"2": [{"generation": {"estimated": {"manifold_k3_train": {}}}}]}
  path.write_text(json.dumps(record))
  assert runner.conflicts(plan, str(tmp_path)) == [("gaussian_ring8__gan", runner.OLD_MEASUREMENT)]
  with pytest.raises(UserError, match="older version of the benchmark") as error:
    runner.check_folder(plan, str(tmp_path), overwrite=False, progress=lambda _: None)
  assert "\n" not in str(error.value) and "--overwrite" in str(error.value)
  runner.check_folder(plan, str(tmp_path), overwrite=True, progress=lambda _: None)
  assert folder.saved_stems(str(tmp_path)) == []
