"""Loading a trained model for inference: which checkpoint is read first, and the classifier
that evaluation's feature extractor receives. (Reading damaged, rotating and mismatched
checkpoints is in tests/test_checkpointing.py, beside the runs that write them.)"""

import os

import jax
import numpy as np
import pytest

from aigc_jax import inference, training
from aigc_jax.errors import ConfigError
from aigc_jax.evaluation.features import ClassifierFeatureExtractor
from experiments.configs import classifier_digits
from tests.training import helpers


def test_inference_candidates_put_the_newest_step_first_and_checkpoints_before_best():
  assert inference.inference_candidates({"latest": [30, 20, 10], "best": [30, 15]}, step=None) == [
    (30, "latest"),
    (30, "best"),
    (20, "latest"),
    (15, "best"),
    (10, "latest"),
  ]
  assert inference.inference_candidates({"latest": [30, 20], "best": [20]}, step=20) == [
    (20, "latest"),
    (20, "best"),
  ]
  assert inference.inference_candidates({"latest": [30], "best": []}, step=5) == []


def _two_steps(config, workdir, data_dir):
  config.dataset.data_dir = data_dir
  config.train.num_steps = 2
  config.train.batch_size = 16
  config.train.eval_every = 0
  config.train.sample_every = 0
  return training.train_and_evaluate(config, workdir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("inference")
  data_dir = str(root / "tfds")
  os.makedirs(data_dir)
  classifier = str(root / "classifier")
  results = _two_steps(classifier_digits.get_config(), classifier, data_dir)
  vae = str(root / "vae")
  _two_steps(helpers.tiny_config("vae"), vae, data_dir)
  return {"classifier": classifier, "classifier_state": results["state"], "vae": vae}


def test_the_classifier_loaded_from_a_workdir_is_the_one_trained(runs):
  state = inference.load_classifier(runs["classifier"], dataset="digits28")
  trained = jax.device_get(runs["classifier_state"])
  assert helpers.max_abs_difference(jax.device_get(state.params), trained.params) == 0.0
  images = np.random.RandomState(0).rand(5, 28, 28, 1).astype(np.float32)
  loaded = ClassifierFeatureExtractor.from_state(state, batch_size=8)
  original = ClassifierFeatureExtractor.from_state(trained, batch_size=8)
  np.testing.assert_array_equal(loaded.probabilities(images), original.probabilities(images))


def test_a_classifier_of_another_dataset_or_a_run_of_another_family_is_refused(runs):
  with pytest.raises(
    ConfigError,
    match=r"^The classifier in .* was trained on 'digits28', not "
    r"'simple_shapes'; train a classifier on 'simple_shapes'\.$",
  ):
    inference.load_classifier(runs["classifier"], dataset="simple_shapes")
  with pytest.raises(
    ConfigError,
    match=r"holds a 'vae' run, not a 'classifier' run; point "
    "the feature extractor at a workdir trained with a classifier config",
  ):
    inference.load_classifier(runs["vae"])
