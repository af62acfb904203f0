"""Feature extractors: penultimate features, softmax oracle, fixed-size batching, one compile."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.evaluation.features import ClassifierFeatureExtractor, FeatureExtractor
from aigc_jax.training.family import get_family
from tests.training import classifier_run


@pytest.fixture(scope="module")
def state():
  config = classifier_run.short_config("")
  config.model.encoder.widths = (8, 16)
  config.model.feature_dim = 12
  return get_family(config, (28, 28, 1)).init(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def extractor(state):
  return ClassifierFeatureExtractor.from_state(state, batch_size=8)


def _images(num, seed=0):
  return np.random.default_rng(seed).random((num, 28, 28, 1), dtype=np.float32)


def test_features_are_the_penultimate_layer(state, extractor):
  images = _images(5)
  feats, probs = extractor.features(images), extractor.probabilities(images)
  assert feats.shape == (5, 12) and feats.dtype == jnp.float32
  assert probs.shape == (5, 10) and extractor.num_classes == 10
  assert float(jnp.min(feats)) >= 0.0  # After the relu.
  head = state.params["head"]
  logits = feats @ head["kernel"] + head["bias"]
  np.testing.assert_allclose(probs, jax.nn.softmax(logits), atol=1e-6)
  np.testing.assert_allclose(jnp.sum(probs, axis=-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(logits, state.apply_fn(state.variables(), images), atol=1e-5)


@pytest.mark.parametrize("num", [1, 7, 8, 9, 20])
def test_batching_pads_and_trims(state, extractor, num):
  images = _images(num, seed=num)
  expected = state.apply_fn(state.variables(), images)
  np.testing.assert_allclose(
    jnp.log(extractor.probabilities(images)), jax.nn.log_softmax(expected), atol=1e-5
  )
  assert extractor.features(images).shape == (num, 12)


def test_each_function_compiles_once_for_any_number_of_images(state, monkeypatch):
  traces = []
  original = ClassifierFeatureExtractor._features_batch

  def counting(self, variables, images):
    traces.append(images.shape)  # Runs only while tracing.
    return original(self, variables, images)

  monkeypatch.setattr(ClassifierFeatureExtractor, "_features_batch", counting)
  extractor = ClassifierFeatureExtractor.from_state(state, batch_size=8)
  for num in (3, 8, 17, 0):
    assert extractor.features(_images(num)).shape == (num, 12)
  assert traces == [(8, 28, 28, 1)]


def test_extractor_without_a_head_is_not_an_oracle():

  class MeanPixel(FeatureExtractor):
    def _features_batch(self, variables, images):
      return jnp.mean(images, axis=(1, 2)) * variables

  extractor = MeanPixel(jnp.float32(2.0), batch_size=4)
  images = _images(6)
  np.testing.assert_allclose(extractor.features(images), 2.0 * images.mean(axis=(1, 2)), rtol=1e-6)
  assert not extractor.has_class_oracle
  with pytest.raises(NotImplementedError, match="no class head"):
    extractor.probabilities(images)
  with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
    extractor.features(images[0])
  with pytest.raises(ValueError, match="batch_size"):
    MeanPixel(None, batch_size=0)
