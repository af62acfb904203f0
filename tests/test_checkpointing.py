"""Checkpointing: exact resume after SIGKILL, signals, damaged and mismatched checkpoints,
failed saves, read-only and full disks."""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aigc_jax import checkpointing, training
from aigc_jax.errors import UserError, WorkdirError
from tests.training import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------- helpers

def _read_state(workdir, step):
  """The raw `state` item of a checkpoint: nested dict of numpy arrays."""
  with ocp.PyTreeCheckpointer() as checkpointer:
    tree = checkpointer.restore(os.path.join(workdir, "checkpoints", str(step), "state"))
  return jax.tree.map(np.asarray, tree)


def _assert_bitwise_equal(tree_a, tree_b):
  flat_a = dict(jax.tree_util.tree_flatten_with_path(tree_a)[0])
  flat_b = dict(jax.tree_util.tree_flatten_with_path(tree_b)[0])
  assert flat_a.keys() == flat_b.keys()
  for path, leaf in flat_a.items():
    assert leaf.dtype == flat_b[path].dtype and np.array_equal(leaf, flat_b[path]), (
        jax.tree_util.keystr(path))


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
  return [sys.executable, "-m", "experiments.train", "--workdir", str(workdir),
          "--config", f"experiments/configs/{config_name}.py", *extra]


def _env(tmp_path, devices):
  return dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "tfds"),
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _wait_for(predicate, process, timeout=300):
  start = time.time()
  while not predicate():
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert time.time() - start < timeout
    time.sleep(0.01)


GAN_SMALL = ["--config.model.encoder.widths=(8,16)", "--config.model.decoder.widths=(16,8)",
             "--config.model.latent_dim=16"]


@pytest.mark.parametrize("config_name,devices,extra", [
    ("vae_digits", 8, []), ("vae_digits", 1, []), ("gan_digits", 8, GAN_SMALL)])
def test_sigkill_between_saves_then_resume_is_bitwise_equal(tmp_path, config_name, devices,
                                                            extra):
  n = 30
  args = ["--config.train.num_steps=%d" % (2 * n), "--config.checkpoint.save_every=%d" % n,
          "--config.train.log_every=10", "--config.train.eval_every=0",
          "--config.train.batch_size=32", "--config.train.num_samples=4",
          # Image grids every step slow the run (they do not touch its state or keys), so
          # the kill lands between the two saves.
          "--config.train.sample_every=1", *extra]
  env = _env(tmp_path, devices)
  killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
  process = subprocess.Popen(_command(killed_dir, config_name, args), cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _wait_for(lambda: os.path.isdir(killed_dir / "checkpoints" / str(n)), process)
  process.send_signal(signal.SIGKILL)
  process.communicate()
  assert process.returncode == -signal.SIGKILL
  assert not os.path.isdir(killed_dir / "checkpoints" / str(2 * n)), "killed too late"

  resumed = subprocess.run(_command(killed_dir, config_name, args), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"Resuming from step {n} of " in resumed.stdout
  reference = subprocess.run(_command(reference_dir, config_name, args), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
  assert reference.returncode == 0, reference.stderr[-3000:]

  _assert_bitwise_equal(_read_state(killed_dir, 2 * n), _read_state(reference_dir, 2 * n))
  # The resumed curve is the uninterrupted one, without the killed run's lost rows.
  assert _train_rows(killed_dir) == _train_rows(reference_dir)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_termination_signal_saves_and_exits_75(tmp_path, signum):
  workdir = tmp_path / "run"
  args = ["--config.train.num_steps=100000", "--config.train.log_every=5",
          "--config.checkpoint.save_every=100000", "--config.train.eval_every=0",
          "--config.train.sample_every=0"]
  process = subprocess.Popen(_command(workdir, "vae_digits8", args), cwd=REPO,
                             env=_env(tmp_path, 8), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  _wait_for(lambda: os.path.exists(workdir / "metrics.jsonl") and
            os.path.getsize(workdir / "metrics.jsonl") > 0, process)
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 75, stderr[-3000:]
  last_line = stderr.strip().splitlines()[-1]
  assert last_line.startswith(f"{signal.Signals(signum).name} received: saved the checkpoint of")
  step = int(last_line.split("checkpoint of step ")[1].split()[0])
  assert os.listdir(workdir / "checkpoints") == [str(step)]
  assert int(_read_state(workdir, step)["train_state"]["step"]) == step


@pytest.mark.parametrize("parallel", ["pmap", "shard_map"])
def test_resume_restores_into_the_run_layout_and_continues_exactly(tmp_path, data_dir,
                                                                  parallel):
  def config(num_steps):
    c = _short(num_steps, 10)
    c.train.parallel = parallel
    return c
  _train(config(10), tmp_path / "resumed", data_dir)
  resumed = _train(config(20), tmp_path / "resumed", data_dir)
  reference = _train(config(20), tmp_path / "reference", data_dir)
  _assert_bitwise_equal(jax.device_get(resumed["state"]), jax.device_get(reference["state"]))
  _assert_bitwise_equal(_read_state(tmp_path / "resumed", 20),
                        _read_state(tmp_path / "reference", 20))


# ------------------------------------------------------------ damaged checkpoints

def _damage(step_dir, how):
  state_dir = os.path.join(step_dir, "state")
  data_files = [os.path.join(root, name) for root, _, names in os.walk(state_dir)
                for name in names if os.sep + "d" + os.sep in os.path.join(root, name) + os.sep
                or root.endswith(os.sep + "d")]
  if how == "metadata_removed":
    os.remove(os.path.join(state_dir, "_METADATA"))
  elif how == "data_truncated":
    assert data_files
    for path in data_files:
      with open(path, "r+b") as f:
        f.truncate(max(os.path.getsize(path) // 3, 1))
  elif how == "data_removed":
    assert data_files
    for path in data_files:
      os.remove(path)


@pytest.mark.parametrize("how", ["metadata_removed", "data_truncated", "data_removed"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, data_dir, how,
                                                              capsys, caplog):
  workdir = tmp_path / "run"
  _train(_short(20, 10), workdir, data_dir)
  _damage(workdir / "checkpoints" / "20", how)
  resumed = _train(_short(30, 10), workdir, data_dir)
  assert "Resuming from step 10 of" in capsys.readouterr().out
  assert any("checkpoints/20 is damaged" in r.getMessage() for r in caplog.records)
  assert os.listdir(workdir / "discarded")[0].startswith("damaged-step-20-")
  reference = _train(_short(30, 10), tmp_path / "reference", data_dir)
  _assert_bitwise_equal(jax.device_get(resumed["state"].params),
                        jax.device_get(reference["state"].params))


def test_no_usable_checkpoint_is_one_clear_error(tmp_path, data_dir):
  workdir = tmp_path / "run"
  _train(_short(20, 10), workdir, data_dir)
  for step in (10, 20):
    _damage(workdir / "checkpoints" / str(step), "metadata_removed")
  with pytest.raises(checkpointing.CheckpointError) as info:
    _train(_short(30, 10), workdir, data_dir)
  message = str(info.value)
  assert "\n" not in message and "None of the checkpoints in" in message
  assert "steps 20, 10" in message and "--fresh" in message


def test_checkpoint_that_does_not_fit_the_config_names_the_keys(tmp_path, data_dir):
  workdir = tmp_path / "run"
  _train(_short(10, 10), workdir, data_dir)
  config = _short(20, 10)
  config.model.latent_dim = 12
  with pytest.raises(checkpointing.CheckpointMismatchError) as info:
    _train(config, workdir, data_dir)
  message = str(info.value)
  assert "\n" not in message and "does not fit the model this config builds" in message
  assert "train_state.params.decoder.Dense_0.kernel (8, 32) vs (12, 32)" in message
  assert "Traceback" not in message
  # --fresh sets the old run aside (nothing deleted) and starts over.
  _train(config, workdir, data_dir, fresh=True)
  assert os.path.isdir(workdir / "checkpoints" / "20")
  (moved,) = [d for d in os.listdir(workdir / "discarded")]
  assert os.path.isdir(workdir / "discarded" / moved / "checkpoints" / "10")


# ----------------------------------------------------------- saves that fail

class _IteratorThatFailsToSave:
  """Stands in for the data iterator; its state cannot be produced (e.g. an I/O error)."""

  def get_state(self):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_save_never_removes_the_last_good_checkpoint(tmp_path, data_dir):
  from aigc_jax import data
  config = _short(10, 10)
  state = helpers.initial_state(config)
  key = jax.random.PRNGKey(0)
  iterator = data.create_iterator("digits28", "train", global_batch_size=16,
                                  num_local_devices=1, seed=0, train=True, data_dir=data_dir)
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep_last=1)
  checkpointer.save(10, state, key, iterator, config)
  checkpointer.wait()
  before = _digest(tmp_path / "checkpoints" / "10")
  with pytest.raises(checkpointing.CheckpointError, match="Earlier checkpoints are untouched"):
    checkpointer.save(20, state, key, _IteratorThatFailsToSave(), config)
    checkpointer.wait()
  checkpointer.close()
  assert checkpointer.steps() == [10]  # keep_last=1, and yet 10 was kept.
  assert _digest(tmp_path / "checkpoints" / "10") == before
  _read_state(tmp_path, 10)
  # The half-written step is a temporary folder, removed when checkpoints are next opened.
  assert [n for n in os.listdir(tmp_path / "checkpoints") if n != "10"] == [
      "20.orbax-checkpoint-tmp"]
  checkpointing.Checkpointer(str(tmp_path)).close()
  assert os.listdir(tmp_path / "checkpoints") == ["10"]


# ------------------------------------------------ read-only and full disks (tmpfs)

@pytest.fixture
def small_filesystem(tmp_path):
  """A 16 MiB tmpfs; skipped where mounting needs privileges this machine does not give."""
  mount_point = tmp_path / "fs"
  mount_point.mkdir()
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
  if result.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
  yield mount_point
  subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_read_only_workdir_is_a_clear_error_and_keeps_checkpoints(small_filesystem, data_dir):
  workdir = small_filesystem / "run"
  _train(_short(10, 10), workdir, data_dir)
  before = _digest(workdir)
  subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
  with pytest.raises(WorkdirError) as info:
    _train(_short(20, 10), workdir, data_dir)
  assert "\n" not in str(info.value) and "Read-only file system" in str(info.value)
  assert _digest(workdir) == before


def test_full_disk_is_a_clear_error_and_keeps_checkpoints(small_filesystem, data_dir):
  workdir = small_filesystem / "run"
  _train(_short(10, 10, async_save=False), workdir, data_dir)
  before = _digest(workdir / "checkpoints")
  filler = small_filesystem / "filler"
  with open(filler, "wb") as f:  # Leave about 64 KiB: less than one checkpoint.
    f.write(b"\0" * (os.statvfs(small_filesystem).f_bavail * os.statvfs(small_filesystem).f_frsize
                     - 64 * 1024))
  with pytest.raises(UserError) as info:
    _train(_short(20, 10, async_save=False), workdir, data_dir)
  assert "\n" not in str(info.value) and "free disk space" in str(info.value)
  after = {path: digest for path, digest in _digest(workdir / "checkpoints").items()
           if ".orbax-checkpoint-tmp" not in path}  # The failed save's own leftovers.
  assert after == before
  os.remove(filler)
  _train(_short(20, 10), workdir, data_dir)  # With space again, the run resumes and finishes.
  assert "20" in os.listdir(workdir / "checkpoints")
