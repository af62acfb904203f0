"""The one training loop: determinism, learning, NaN handling, compile-once, outputs on disk."""

import json
import os

import jax
import numpy as np
import pytest

from aigc_jax import training
from aigc_jax.errors import NonFiniteLossError
from aigc_jax.training import family as family_lib
from tests.training import helpers


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _run(config, workdir, data_dir):
  config.dataset.data_dir = data_dir
  return training.train_and_evaluate(config, str(workdir))


def _read_jsonl(workdir, split):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


def _short(family, body="mlp", num_steps=6, seed=0):
  config = helpers.tiny_config(family, body)
  config.seed = seed
  config.train.num_steps = num_steps
  config.train.log_every = 2
  config.train.eval_every = num_steps
  config.train.sample_every = num_steps
  config.train.num_samples = 8
  return config


def test_same_seed_same_metrics_and_different_seed_differs(tmp_path, data_dir):
  run = lambda name, seed: _run(_short("vae", seed=seed), tmp_path / name, data_dir)
  first, again, other = run("a", 0), run("b", 0), run("c", 1)
  drop_speed = lambda rows: [
    {k: v for k, v in r.items() if k != "samples_per_second"} for r in rows
  ]
  rows_a = drop_speed(_read_jsonl(tmp_path / "a", "train"))
  assert rows_a == drop_speed(_read_jsonl(tmp_path / "b", "train"))
  assert _read_jsonl(tmp_path / "a", "eval") == _read_jsonl(tmp_path / "b", "eval")
  assert rows_a != drop_speed(_read_jsonl(tmp_path / "c", "train"))
  assert helpers.max_abs_difference(first["state"].params, again["state"].params) == 0.0
  assert helpers.max_abs_difference(first["state"].params, other["state"].params) > 1e-3


@pytest.mark.parametrize("family,body", [("vae", "mlp"), ("ae", "conv")])
def test_loss_falls_on_digits(tmp_path, data_dir, family, body):
  config = _short(family, body, num_steps=120)
  config.train.log_every = 10
  config.train.eval_every = 0  # Only at the end.
  config.train.batch_size = 64
  _run(config, tmp_path, data_dir)
  losses = [r["loss"] for r in _read_jsonl(tmp_path, "train")]
  assert len(losses) == 12
  assert losses[-1] < 0.7 * losses[0], losses
  assert _read_jsonl(tmp_path, "eval")[-1]["loss"] < losses[0]


def test_gan_step_changes_both_networks():
  config = helpers.tiny_config("gan", "conv")
  batches = helpers.random_batches(1, 16)
  before = helpers.initial_state(config)
  after, metrics = helpers.run_steps(config, batches, helpers.pmap_on(8))
  for name in ("generator", "discriminator"):
    moved = helpers.max_abs_difference(getattr(before, name).params, getattr(after, name).params)
    assert moved > 1e-5, name
    # BatchNorm running statistics are updated too.
    assert (
      helpers.max_abs_difference(
        getattr(before, name).batch_stats, getattr(after, name).batch_stats
      )
      > 1e-5
    ), name
  assert int(after.generator.step) == int(after.discriminator.step) == 1
  assert np.isfinite(metrics[0]["d_loss"]) and np.isfinite(metrics[0]["g_loss"])


def test_outputs_on_disk(tmp_path, data_dir):
  _run(_short("vae"), tmp_path, data_dir)
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["model"]["family"] == "vae"
  images = sorted(os.listdir(tmp_path / "images"))
  assert images == ["reconstructions_00000006.png", "samples_00000006.png"]
  assert [r["step"] for r in _read_jsonl(tmp_path, "train")] == [2, 4, 6]
  assert os.listdir(tmp_path / "tensorboard")


def test_batch_larger_than_the_training_split_is_said_once(tmp_path, data_dir, capsys, monkeypatch):
  class Stop(Exception):
    """Ends the run once its data is read: what follows is an ordinary run."""

  def stop(*args, **kwargs):
    raise Stop()

  monkeypatch.setattr(training.loop.data, "create_iterator", stop)
  config = _short("vae", num_steps=3)
  config.train.batch_size = 1504  # digits28 has 1,497 training images; 1504 = 8 * 188.
  with pytest.raises(Stop):
    _run(config, tmp_path, data_dir)
  said = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning: ")]
  assert said == [
    "warning: train.batch_size 1504 is larger than the training split (1497 "
    "examples of digits28): every batch repeats examples."
  ]


def test_nan_loss_stops_the_run_naming_the_step(tmp_path, data_dir):
  config = _short("vae", num_steps=8)
  config.train.log_every = 4
  config.optimizer.learning_rate = 1e30
  with pytest.raises(NonFiniteLossError) as info:
    _run(config, tmp_path, data_dir)
  message = str(info.value)
  assert "\n" not in message and "at step" in message and "loss" in message
  step = int(message.split("at step ")[1].split(":")[0])
  assert 1 <= step <= 4
  # What was logged before is intact and readable.
  assert os.path.exists(tmp_path / "config.json")
  _read_jsonl(tmp_path, "train")


@pytest.mark.parametrize("parallel", ["pmap", "shard_map"])
def test_train_step_compiles_once(tmp_path, data_dir, monkeypatch, parallel):
  traces = []
  original = family_lib.get_family

  def counting_family(config, shape):
    fam = original(config, shape)

    def train_step(state, batch, key):
      traces.append(1)  # Runs only while tracing.
      return fam.train_step(state, batch, key)

    return family_lib.Family(
      init=fam.init,
      train_step=train_step,
      eval_step=fam.eval_step,
      generate=fam.generate,
      reconstruct=fam.reconstruct,
    )

  monkeypatch.setattr("aigc_jax.training.loop.get_family", counting_family)
  config = _short("gan", "conv", num_steps=5)
  config.train.parallel = parallel
  _run(config, tmp_path, data_dir)
  assert len(traces) == 1


def test_different_devices_draw_different_noise():
  from aigc_jax.training import noise

  key = jax.random.PRNGKey(3)

  def per_device(x):
    return noise.per_example_normal(key, noise.global_example_indices(x.shape[0]), (4,))

  drawn = jax.pmap(per_device, axis_name=noise.BATCH_AXIS)(np.zeros((8, 2)))
  flat = np.asarray(drawn).reshape(16, 4)
  assert len({tuple(row) for row in flat.round(6)}) == 16
  # Example i gets the same noise however the batch is split.
  single = jax.pmap(per_device, axis_name=noise.BATCH_AXIS)(np.zeros((1, 16)))
  np.testing.assert_array_equal(np.asarray(single).reshape(16, 4), flat)


def test_a_whole_run_compiles_a_handful_of_programs(tmp_path, data_dir):
  """Start-up cost: initialisation is one program, not one per initialiser op (the default
  job's start-up lost seconds to them)."""
  compiles = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event.endswith("backend_compile_duration"):
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    config = _short("vae", num_steps=4)
    # Shapes no other test uses, so nothing is already compiled for them in this process.
    config.model.latent_dim = 7
    config.model.encoder.widths = (29,)
    config.model.decoder.widths = (31,)
    _run(config, tmp_path, data_dir)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  # 37 today on 8 devices: train and eval steps, sampling, reconstruction, init, the state
  # copy, key splits, and 24 slices orbax compiles to save replicated arrays (13 on 1 device).
  # Initialising op by op added 42.
  assert len(compiles) <= 45, len(compiles)
