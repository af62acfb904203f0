"""Checkpointing: exact resume after SIGKILL, signals, damaged and mismatched checkpoints,
resumes with a changed config, failed saves, read-only and full disks, reading a run that
trains."""

import errno
import gc
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aigc_jax import checkpointing, inference, training
from aigc_jax.errors import ConfigError, UserError, WorkdirError
from tests import filesystems
from tests.training import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------- helpers


def _read_state(workdir, step):
  """The raw `state` item of a checkpoint: nested dict of numpy arrays."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  with ocp.PyTreeCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata)
    tree = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  return jax.tree.map(np.asarray, tree)


class _Quiet:
  """Collects what a block leaves behind of orbax's async machinery: unraisable exceptions
  ("Event loop is closed") and "coroutine ... was never awaited" warnings."""

  def __init__(self, monkeypatch):
    self.unraisable = []
    # Keep text only: holding the hook's objects past the call can resurrect them.
    monkeypatch.setattr(
      sys, "unraisablehook", lambda hook: self.unraisable.append(repr(hook.exc_value))
    )
    self._warnings = warnings.catch_warnings(record=True)

  def __enter__(self):
    self.warnings = self._warnings.__enter__()
    warnings.simplefilter("always")
    return self

  def __exit__(self, *exc_info):
    time.sleep(0.5)  # Reads still in flight report within milliseconds.
    gc.collect()
    self._warnings.__exit__(*exc_info)
    noise = self.unraisable + [
      str(w.message) for w in self.warnings if "never awaited" in str(w.message)
    ]
    assert not noise, noise


def _assert_bitwise_equal(tree_a, tree_b):
  flat_a = dict(jax.tree_util.tree_flatten_with_path(tree_a)[0])
  flat_b = dict(jax.tree_util.tree_flatten_with_path(tree_b)[0])
  assert flat_a.keys() == flat_b.keys()
  for path, leaf in flat_a.items():
    assert leaf.dtype == flat_b[path].dtype and np.array_equal(leaf, flat_b[path]), (
      jax.tree_util.keystr(path)
    )


def _train_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [{k: v for k, v in r.items() if k != "samples_per_second"} for r in rows]


def _digest(directory):
  """{relative path: sha256} of every file under `directory`."""
  digests = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        digests[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return digests


def _short(num_steps, save_every, **overrides):
  config = helpers.tiny_config("vae")
  config.train.num_steps = num_steps
  config.train.log_every = 5
  config.train.eval_every = 0
  config.train.sample_every = 0
  config.checkpoint.save_every = save_every
  config.checkpoint.async_save = overrides.pop("async_save", True)
  for key, value in overrides.items():
    config.checkpoint[key] = value
  return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _train(config, workdir, data_dir, **kwargs):
  config.dataset.data_dir = data_dir
  return training.train_and_evaluate(config, str(workdir), **kwargs)


# ------------------------------------------------------- SIGKILL, SIGTERM, SIGINT (CLI)


def _command(workdir, config_name, extra):
  return [
    sys.executable,
    "-m",
    "experiments.train",
    "--workdir",
    str(workdir),
    "--config",
    f"experiments/configs/{config_name}.py",
    *extra,
  ]


def _env(tmp_path, devices):
  return dict(
    os.environ,
    TFDS_DATA_DIR=str(tmp_path / "tfds"),
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
  )


def _wait_for(predicate, process, timeout=300):
  start = time.time()
  while not predicate():
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert time.time() - start < timeout
    time.sleep(0.01)


GAN_SMALL = [
  "--config.model.encoder.widths=(8,16)",
  "--config.model.decoder.widths=(16,8)",
  "--config.model.latent_dim=16",
]


@pytest.mark.parametrize(
  "config_name,devices,extra",
  # The VAE on one device and the GAN on eight (a VAE on eight added 30 s of CI and no path).
  [("vae_digits", 1, []), ("gan_digits", 8, GAN_SMALL)],
)
def test_sigkill_between_saves_then_resume_is_bitwise_equal(tmp_path, config_name, devices, extra):
  n = 30
  args = [
    "--config.train.num_steps=%d" % (2 * n),
    "--config.checkpoint.save_every=%d" % n,
    "--config.train.log_every=10",
    "--config.train.eval_every=0",
    "--config.train.batch_size=32",
    "--config.train.num_samples=4",
    # Image grids every step slow the run (they do not touch its state or keys), so
    # the kill lands between the two saves.
    "--config.train.sample_every=1",
    *extra,
  ]
  env = _env(tmp_path, devices)
  killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
  process = subprocess.Popen(
    _command(killed_dir, config_name, args),
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  _wait_for(lambda: os.path.isdir(killed_dir / "checkpoints" / str(n)), process)
  process.send_signal(signal.SIGKILL)
  process.communicate()
  assert process.returncode == -signal.SIGKILL
  assert not os.path.isdir(killed_dir / "checkpoints" / str(2 * n)), "killed too late"

  resumed = subprocess.run(
    _command(killed_dir, config_name, args),
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"Resuming from step {n} of " in resumed.stderr
  reference = subprocess.run(
    _command(reference_dir, config_name, args),
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert reference.returncode == 0, reference.stderr[-3000:]

  _assert_bitwise_equal(_read_state(killed_dir, 2 * n), _read_state(reference_dir, 2 * n))
  # The resumed curve is the uninterrupted one, without the killed run's lost rows.
  assert _train_rows(killed_dir) == _train_rows(reference_dir)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_termination_signal_saves_and_exits_75(tmp_path, signum):
  workdir = tmp_path / "run"
  args = [
    "--config.train.num_steps=100000",
    "--config.train.log_every=5",
    "--config.checkpoint.save_every=100000",
    "--config.train.eval_every=0",
    "--config.train.sample_every=0",
  ]
  process = subprocess.Popen(
    _command(workdir, "vae_digits8", args),
    cwd=REPO,
    env=_env(tmp_path, 8),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  _wait_for(
    lambda: (
      os.path.exists(workdir / "metrics.jsonl") and os.path.getsize(workdir / "metrics.jsonl") > 0
    ),
    process,
  )
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 75, stderr[-3000:]
  last_line = stderr.strip().splitlines()[-1]
  assert last_line.startswith(f"{signal.Signals(signum).name} received: saved the checkpoint of")
  step = int(last_line.split("checkpoint of step ")[1].split()[0])
  assert os.listdir(workdir / "checkpoints") == [str(step)]
  assert int(_read_state(workdir, step)["train_state"]["step"]) == step


@pytest.mark.parametrize("parallel", ["pmap", "shard_map"])
def test_resume_restores_into_the_run_layout_and_continues_exactly(tmp_path, data_dir, parallel):
  def config(num_steps):
    c = _short(num_steps, 10)
    c.train.parallel = parallel
    return c

  _train(config(10), tmp_path / "resumed", data_dir)
  resumed = _train(config(20), tmp_path / "resumed", data_dir)
  reference = _train(config(20), tmp_path / "reference", data_dir)
  _assert_bitwise_equal(jax.device_get(resumed["state"]), jax.device_get(reference["state"]))
  _assert_bitwise_equal(
    _read_state(tmp_path / "resumed", 20), _read_state(tmp_path / "reference", 20)
  )


# ------------------------------------------------------------ damaged checkpoints


def _damage(step_dir, how):
  state_dir = os.path.join(step_dir, "state")
  data_files = [
    os.path.join(root, name)
    for root, _, names in os.walk(state_dir)
    for name in names
    if os.sep + "d" + os.sep in os.path.join(root, name) + os.sep or root.endswith(os.sep + "d")
  ]
  if how == "metadata_removed":
    os.remove(os.path.join(state_dir, "_METADATA"))
  elif how == "manifest_removed":  # Without it the OCDBT store reads as empty.
    os.remove(os.path.join(state_dir, "manifest.ocdbt"))
  elif how == "data_truncated":
    assert data_files
    for path in data_files:
      with open(path, "r+b") as f:
        f.truncate(max(os.path.getsize(path) // 3, 1))
  elif how == "data_removed":
    assert data_files
    for path in data_files:
      os.remove(path)


@pytest.fixture(scope="module")
def trained_20_and_reference_30(tmp_path_factory, data_dir):
  """A run trained 20 steps (saves at 10 and 20) and the params of an uninterrupted 30-step
  run, shared by the damaged-checkpoint cases."""
  root = tmp_path_factory.mktemp("damaged")
  _train(_short(20, 10), root / "trained_20", data_dir)
  reference = _train(_short(30, 10), root / "reference", data_dir)
  return root / "trained_20", jax.device_get(reference["state"].params)


@pytest.mark.parametrize(
  "how,reason",
  [
    ("metadata_removed", r"state/_METADATA: No such file or directory"),
    ("manifest_removed", r"state/manifest\.ocdbt: No such file or directory"),
    ("data_truncated", r"state/d/[0-9a-f]+: truncated to \d+ bytes"),
    ("data_removed", r"state/d/[0-9a-f]+: No such file or directory"),
  ],
)
def test_damaged_newest_checkpoint_falls_back_to_the_previous(
  tmp_path, data_dir, trained_20_and_reference_30, how, reason, capsys, monkeypatch
):
  trained_20, reference_params = trained_20_and_reference_30
  workdir = tmp_path / "run"
  shutil.copytree(trained_20, workdir)  # A copy of one 20-step run: each case damages its own.
  _damage(workdir / "checkpoints" / "20", how)
  capsys.readouterr()
  # Orbax reads a step's arrays concurrently and stops at the first failure, leaving the other
  # reads to report into a closed event loop: a damaged step must never reach that read.
  arrays_read = []
  original = ocp.CheckpointManager.restore

  def restore(self, step, *args, **kwargs):
    if "state" in kwargs.get("args", {}):
      arrays_read.append(step)
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "restore", restore)
  with _Quiet(monkeypatch):
    resumed = _train(_short(30, 10), workdir, data_dir)
  assert arrays_read == [10]
  err = capsys.readouterr().err
  events = [
    l for l in err.splitlines() if not l.startswith("\r") and "step/s" not in l and "?step" not in l
  ]
  # One line: the step, the file and the OS-level reason, no tensorstore spec.
  (damaged,) = [l for l in events if "is damaged" in l]
  assert re.fullmatch(
    rf"warning: Checkpoint {workdir}/checkpoints/20 is damaged \({workdir}/checkpoints/20/"
    rf"{reason}\); moved it to {workdir}/discarded/damaged-step-20-\S+ and trying the "
    r"previous one\.",
    damaged,
  ), damaged
  assert "Resuming from step 10 of" in err
  assert [d for d in os.listdir(workdir / "discarded") if d.startswith("damaged-step-20-")]
  _assert_bitwise_equal(jax.device_get(resumed["state"].params), reference_params)


def test_reading_a_run_whose_training_rotates_a_step_away_is_not_damage(
  tmp_path, data_dir, monkeypatch, capsys, caplog
):
  """The evaluation runner reads a workdir that is training: a step removed by the rotation
  of old checkpoints while it is read is not "damaged"; the newest one left is read."""
  workdir = tmp_path / "run"
  _train(_short(20, 10, keep_best=0), workdir, data_dir)  # No best copy of step 20 to read.
  original = ocp.CheckpointManager.restore
  rotated = []

  def restore_while_training_rotates(self, step, *args, **kwargs):
    if step == 20 and not rotated:
      rotated.append(step)
      shutil.rmtree(workdir / "checkpoints" / "20")  # Training kept only the newest.
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "restore", restore_while_training_rotates)
  capsys.readouterr()
  config, _, state, step = inference.load_for_inference(str(workdir))
  assert rotated and step == 10 and config.train.num_steps == 20
  said = capsys.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
  assert "damaged" not in said and "train again" not in said
  assert "read only" not in said  # Nor orbax's warning about a directory it may write.
  reference = _read_state(workdir, 10)["train_state"]["params"]
  _assert_bitwise_equal(jax.device_get(state.params), reference)


def _trained_with_a_best_copy_of_step_20(workdir, data_dir):
  config = _short(20, 10)
  config.train.eval_every = 10  # Evaluations feed checkpoints_best/ (keep_best 1).
  _train(config, workdir, data_dir)
  assert os.listdir(workdir / "checkpoints_best") == ["20"]


def test_inference_reads_the_intact_best_copy_of_a_damaged_newest_step(
  tmp_path, data_dir, capsys, monkeypatch
):
  """checkpoints/20 lost its manifest, checkpoints_best/20 is intact: step 20 is read from
  the best copy (not step 10), said in one line naming the missing file, and orbax never
  reads the damaged arrays (no "Event loop is closed" reports)."""
  workdir = tmp_path / "run"
  _trained_with_a_best_copy_of_step_20(workdir, data_dir)
  _damage(workdir / "checkpoints" / "20", "manifest_removed")
  capsys.readouterr()
  with _Quiet(monkeypatch):
    _, _, state, step = inference.load_for_inference(str(workdir))
  assert step == 20
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert line == (
    f"warning: Checkpoint {workdir}/checkpoints/20 ({workdir}/checkpoints/20/state/"
    "manifest.ocdbt: No such file or directory) is damaged; reading "
    f"{workdir}/checkpoints_best/20 instead, an intact copy of the same step."
  ), line
  best = os.path.join(workdir, "checkpoints_best", "20", "state")
  with ocp.PyTreeCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(best).item_metadata.tree
    saved = checkpointer.restore(
      best,
      args=ocp.args.PyTreeRestore(
        restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata)
      ),
    )
  _assert_bitwise_equal(
    jax.device_get(state.params), jax.tree.map(np.asarray, saved["train_state"]["params"])
  )
  assert os.path.isdir(workdir / "checkpoints" / "20")  # Reading changes nothing.


def test_an_older_step_is_read_only_when_no_copy_of_the_newest_is_intact(
  tmp_path, data_dir, capsys
):
  workdir = tmp_path / "run"
  _trained_with_a_best_copy_of_step_20(workdir, data_dir)
  for directory in ("checkpoints", "checkpoints_best"):
    _damage(workdir / directory / "20", "manifest_removed")
  capsys.readouterr()
  assert inference.load_for_inference(str(workdir))[3] == 10
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert line.startswith(f"warning: Checkpoints {workdir}/checkpoints/20 (") and line.endswith(
    f"are damaged; reading {workdir}/checkpoints/10 instead, the newest readable one."
  ), line
  assert line.count("manifest.ocdbt: No such file or directory") == 2


def test_reports_of_reads_left_in_flight_by_a_failed_orbax_read_are_dropped():
  """Damage that only orbax's own read finds: its other reads report "Event loop is closed"
  into a closed loop (one traceback each, as unraisable exceptions). The hook installed on
  import drops exactly those and passes any other report on."""
  passed_on = []
  hook = checkpointing._late_read_filter(  # pylint: disable=protected-access
    lambda unraisable: passed_on.append(repr(unraisable.exc_value))
  )
  unraisable = lambda error: type("Unraisable", (), {"exc_value": error})()
  hook(unraisable(RuntimeError("Event loop is closed")))
  assert passed_on == []
  hook(unraisable(RuntimeError("something else")))
  hook(unraisable(ValueError("Event loop is closed")))
  assert passed_on == ["RuntimeError('something else')", "ValueError('Event loop is closed')"]
  installed = subprocess.run(
    [
      sys.executable,
      "-c",
      "import sys; from aigc_jax import checkpointing; "
      "print(getattr(sys.unraisablehook, 'drops_late_reads', False))",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert installed.stdout.strip() == "True", installed.stderr[-2000:]


def test_no_usable_checkpoint_is_one_clear_error_and_a_rerun_keeps_the_logs_apart(
  tmp_path, data_dir, capsys
):
  workdir = tmp_path / "run"
  _train(_short(20, 10), workdir, data_dir)
  old_rows = _train_rows(workdir)
  for step in (10, 20):
    _damage(workdir / "checkpoints" / str(step), "metadata_removed")
  with pytest.raises(checkpointing.CheckpointError) as info:
    _train(_short(30, 10), workdir, data_dir)
  message = str(info.value)
  assert "\n" not in message and "None of the checkpoints in" in message
  assert "steps 20, 10" in message and "--fresh" in message
  # The same command again starts at step 0, with the old run's logs set aside, not mixed.
  capsys.readouterr()
  _train(_short(30, 10), workdir, data_dir)
  assert [r["step"] for r in _train_rows(workdir)] == [5, 10, 15, 20, 25, 30, 30]
  (moved,) = [d for d in os.listdir(workdir / "discarded") if not d.startswith("damaged")]
  assert _train_rows(workdir / "discarded" / moved) == old_rows
  assert (
    f"No checkpoint to resume from: starting at step 0; the earlier run's logs are in "
    f"{workdir}/discarded/{moved}."
  ) in capsys.readouterr().err


def test_checkpoint_that_does_not_fit_the_config_names_the_keys(tmp_path, data_dir):
  workdir = tmp_path / "run"
  _train(_short(10, 10), workdir, data_dir)
  (workdir / "eval" / "step_10").mkdir(parents=True)  # An evaluation of the old model.
  original_config = (workdir / "config.json").read_text()
  config = _short(20, 10)
  config.model.latent_dim = 12
  with pytest.raises(ConfigError, match="model.latent_dim 8 -> 12"):  # A changed config...
    _train(config, workdir, data_dir)
  with pytest.raises(checkpointing.CheckpointMismatchError) as info:  # ...even when forced.
    _train(config, workdir, data_dir, allow_config_change=True)
  message = str(info.value)
  assert "\n" not in message and "does not fit the model this config builds" in message
  assert "train_state.params.decoder.Dense_0.kernel (8, 32) vs (12, 32)" in message
  assert "Traceback" not in message
  # --fresh sets the whole old run aside (nothing deleted) and starts over.
  _train(config, workdir, data_dir, fresh=True)
  assert os.path.isdir(workdir / "checkpoints" / "20")
  (moved,) = [d for d in os.listdir(workdir / "discarded")]
  old = workdir / "discarded" / moved
  assert os.path.isdir(old / "checkpoints" / "10") and os.path.isdir(old / "eval" / "step_10")
  assert (old / "config.json").read_text() == original_config
  assert json.loads((workdir / "config.json").read_text())["model"]["latent_dim"] == 12
  assert not (workdir / "eval").exists()


def test_resume_with_a_changed_config_keeps_the_history(tmp_path, data_dir, capsys):
  workdir = tmp_path / "run"
  _train(_short(10, 10), workdir, data_dir)
  original_config = (workdir / "config.json").read_text()

  changed = _short(20, 10)
  changed.model.beta = 2.0
  changed.optimizer.learning_rate = 3e-4
  changed.seed = 1
  with pytest.raises(ConfigError) as info:
    _train(changed, workdir, data_dir)
  assert "model.beta 1.0 -> 2.0, optimizer.learning_rate 0.001 -> 0.0003, seed 0 -> 1" in str(
    info.value
  )
  with pytest.raises(
    ConfigError,
    match="train.num_steps is 5 but the checkpoint in .* is at step 10; a run cannot be shortened",
  ):
    _train(_short(5, 10), workdir, data_dir)
  capsys.readouterr()
  same = _train(_short(10, 10), workdir, data_dir)  # Already there: says so, changes nothing.
  assert same["step"] == 10 and "is already at step 10 (train.num_steps): nothing to train" in (
    capsys.readouterr().err
  )
  assert os.listdir(workdir / "checkpoints") == ["10"]
  assert not (workdir / "resumes.jsonl").exists()

  changed.checkpoint.keep_last = 4  # Allowed on resume: recorded, not refused.
  _train(changed, workdir, data_dir, allow_config_change=True)
  assert (workdir / "config.json").read_text() == original_config  # History is not rewritten.
  (resume,) = [json.loads(line) for line in open(workdir / "resumes.jsonl")]
  assert resume["from_step"] == 10 and resume["num_steps"] == 20
  assert resume["forced"] == ["model.beta", "optimizer.learning_rate", "seed"]
  assert resume["changes"] == {
    "checkpoint.keep_last": {"saved": 3, "new": 4},
    "model.beta": {"saved": 1.0, "new": 2.0},
    "optimizer.learning_rate": {"saved": 0.001, "new": 0.0003},
    "seed": {"saved": 0, "new": 1},
    "train.num_steps": {"saved": 10, "new": 20},
  }
  # The checkpoint holds the config that trained it; resuming again needs no flag.
  assert inference.load_for_inference(str(workdir))[0].model.beta == 2.0


def test_rerun_of_a_step_that_has_a_best_checkpoint_finishes(tmp_path, data_dir, capsys):
  """A kill -9 between the best save and the latest save of step 20 (or a damaged latest 20)
  leaves checkpoints_best/20 behind; the resumed run trains step 20 again and saves it."""

  def config():
    c = _short(20, 10)
    c.train.eval_every = 10
    return c

  workdir = tmp_path / "run"
  _train(config(), workdir, data_dir)
  assert "20" in os.listdir(workdir / "checkpoints_best")
  (tmp_path / "moved" / "checkpoints").mkdir(parents=True)
  os.rename(
    workdir / "checkpoints" / "20",  # As if the kill had come before this save.
    tmp_path / "moved" / "checkpoints" / "20",
  )
  results = _train(config(), workdir, data_dir)  # Today: StepAlreadyExistsError, exit 2.
  assert results["step"] == 20
  assert "20" in os.listdir(workdir / "checkpoints")
  # The old best of step 20 is set aside (not deleted); the new one replaces it.
  (moved,) = [d for d in os.listdir(workdir / "discarded") if d.startswith("best-after-step-10")]
  assert os.listdir(workdir / "discarded" / moved) == ["20"]
  assert "20" in os.listdir(workdir / "checkpoints_best")
  _assert_bitwise_equal(_read_state(workdir, 20), _read_state(tmp_path / "moved", 20))


# ----------------------------------------------------------- saves that fail


class _IteratorThatFailsToSave:
  """Stands in for the data iterator; its state cannot be produced (e.g. an I/O error)."""

  def get_state(self):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_save_never_removes_the_last_good_checkpoint(
  tmp_path, data_dir, monkeypatch, capsys
):
  from aigc_jax import data

  config = _short(10, 10)
  state = helpers.initial_state(config)
  key = jax.random.PRNGKey(0)
  iterator = data.create_iterator(
    "digits28",
    "train",
    global_batch_size=16,
    num_local_devices=1,
    seed=0,
    train=True,
    data_dir=data_dir,
  )
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep_last=1)
  checkpointer.save(10, state, key, iterator, config)
  checkpointer.wait()
  before = _digest(tmp_path / "checkpoints" / "10")
  # The iterator's state is taken before orbax starts the save's other items, which would be
  # left as coroutines never awaited.
  saves = []
  original = ocp.CheckpointManager.save
  monkeypatch.setattr(
    ocp.CheckpointManager,
    "save",
    lambda self, step, *a, **k: saves.append(step) or original(self, step, *a, **k),
  )
  with _Quiet(monkeypatch):
    with pytest.raises(checkpointing.CheckpointError, match="Earlier checkpoints are untouched"):
      checkpointer.save(20, state, key, _IteratorThatFailsToSave(), config)
      checkpointer.wait()
  assert saves == []
  # A write error that is not the disk's is a bug: its own error, not "free disk space".
  with pytest.raises(Exception) as info:
    checkpointer.save(10, state, key, iterator, config)
    checkpointer.wait()
  assert not isinstance(info.value, UserError) and "free disk space" not in str(info.value)
  checkpointer.close()
  assert checkpointer.steps() == [10]  # keep_last=1, and yet 10 was kept.
  assert _digest(tmp_path / "checkpoints" / "10") == before
  _read_state(tmp_path, 10)
  # A save cut short by a crash leaves a temporary folder; it is removed on the next open.
  leftover = tmp_path / "checkpoints" / "20.orbax-checkpoint-tmp-1234"
  (leftover / "state").mkdir(parents=True)
  capsys.readouterr()
  checkpointing.Checkpointer(str(tmp_path)).close()
  assert os.listdir(tmp_path / "checkpoints") == ["10"]
  assert f"Removing {tmp_path}/checkpoints/{leftover.name}, a save that never finished." in (
    capsys.readouterr().err
  )


# ------------------------------------------------ read-only and full disks (tmpfs)


def test_read_only_workdir_is_a_clear_error_and_keeps_checkpoints(small_filesystem, data_dir):
  workdir = small_filesystem / "run"
  _train(_short(10, 10), workdir, data_dir)
  before = _digest(workdir)
  filesystems.make_read_only(small_filesystem)
  with pytest.raises(WorkdirError) as info:
    _train(_short(20, 10), workdir, data_dir)
  assert "\n" not in str(info.value) and "Read-only file system" in str(info.value)
  assert _digest(workdir) == before


def test_full_disk_is_a_clear_error_and_keeps_checkpoints(small_filesystem, data_dir, monkeypatch):
  workdir = small_filesystem / "run"
  _train(_short(10, 10, async_save=False), workdir, data_dir)
  before = _digest(workdir / "checkpoints")
  filler = small_filesystem / "filler"
  with open(filler, "wb") as f:  # Leave about 64 KiB: less than one checkpoint.
    f.write(
      b"\0"
      * (os.statvfs(small_filesystem).f_bavail * os.statvfs(small_filesystem).f_frsize - 64 * 1024)
    )
  with _Quiet(monkeypatch), pytest.raises(UserError) as info:
    _train(_short(20, 10, async_save=False), workdir, data_dir)
  assert "\n" not in str(info.value) and "free disk space" in str(info.value)
  assert "No space left on device" in str(info.value)
  after = {
    path: digest
    for path, digest in _digest(workdir / "checkpoints").items()
    if ".orbax-checkpoint-tmp" not in path
  }  # The failed save's own leftovers.
  assert after == before
  os.remove(filler)
  _train(_short(20, 10), workdir, data_dir)  # With space again, the run resumes and finishes.
  assert "20" in os.listdir(workdir / "checkpoints")
