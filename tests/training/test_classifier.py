"""The classifier family: it learns digits28 through the one loop, its eval masks padding, and
its step averages gradients over devices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aigc_jax import data
from aigc_jax.evaluation.features import ClassifierFeatureExtractor
from aigc_jax.training import noise
from aigc_jax.training.family import get_family
from tests.training import classifier_run, helpers


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return classifier_run.trained_digits_classifier(tmp_path_factory)


def _tiny_config():
  config = classifier_run.short_config("")
  config.model.encoder.widths = (8, 16)
  config.model.feature_dim = 16
  return config


def test_classifier_learns_digits(run):
  # 150 steps of 64 reach 0.98 test accuracy (0.993 after the config's 600 steps).
  assert run["results"]["eval"]["accuracy"] >= 0.95
  train = classifier_run.read_metrics(run["workdir"], "train")
  assert len(train) == classifier_run.NUM_STEPS // classifier_run.LOG_EVERY
  assert train[-1]["loss"] < 0.2 * train[0]["loss"]
  assert train[-1]["accuracy"] > train[0]["accuracy"]
  assert classifier_run.read_metrics(run["workdir"], "eval")[-1]["accuracy"] == pytest.approx(
    run["results"]["eval"]["accuracy"]
  )


def test_eval_accuracy_counts_every_test_digit_once(run):
  """The loop's eval accuracy (300 digits in padded batches of 256) equals the accuracy of the
  trained network's argmax over the 300 real test digits: padding is masked out."""
  images, labels = data.load_split_images("digits28", "test", run["data_dir"])
  assert images.shape == (300, 28, 28, 1)
  oracle = ClassifierFeatureExtractor.from_state(run["results"]["state"])
  predictions = np.argmax(np.asarray(oracle.probabilities(images)), axis=-1)
  assert run["results"]["eval"]["accuracy"] == pytest.approx(
    np.mean(predictions == labels), abs=1e-6
  )


def test_eval_step_sums_only_masked_in_examples():
  config = _tiny_config()
  family = get_family(config, (28, 28, 1))
  state = family.init(jax.random.PRNGKey(0))
  batch = helpers.random_batches(1, 16)[0]
  batch["mask"][::2] = 0.0  # Every other example is padding.
  sums = jax.pmap(family.eval_step, axis_name=noise.BATCH_AXIS, in_axes=(None, 0, None))(
    state, helpers.device_layout(batch, 8), jax.random.PRNGKey(1)
  )
  sums = jax.tree.map(lambda x: float(x[0]), sums)
  logits = jax.jit(state.apply_fn)(state.variables(), batch["image"])
  real = batch["mask"] > 0
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  assert sums["weight"] == 8.0
  assert sums["loss"] == pytest.approx(float(jnp.sum(losses[real])), rel=1e-5)
  correct = np.asarray(jnp.argmax(logits, -1) == batch["label"])[real]
  assert sums["accuracy"] == float(np.sum(correct))


def test_train_step_on_8_devices_matches_1_device():
  config = _tiny_config()
  batches = helpers.random_batches(2, 16)
  before = helpers.initial_state(config)
  eight, metrics_eight = helpers.run_steps(config, batches, helpers.pmap_on(8))
  one, metrics_one = helpers.run_steps(config, batches, helpers.pmap_on(1))
  assert helpers.max_abs_difference(before.params, eight.params) > 1e-4
  # Gradients are averaged, not summed or left per device: 8 shards give the 1-device step.
  assert helpers.max_abs_difference(eight.params, one.params) < 1e-5
  for name in ("loss", "accuracy"):
    assert metrics_eight[-1][name] == pytest.approx(metrics_one[-1][name], abs=1e-5)
  assert int(eight.step) == 2
