"""Hallucination rates on real digits28 with a known fraction of planted hallucinations.

The feature space and class oracle are a classifier trained for 150 steps by the one loop
(0.98 test accuracy). Each test mixes the 300 real test digits (or half of them) with a
planted 25% and checks that the rate finds the planted samples and that its 95% Wilson
interval contains what the rate should be: the planted fraction plus the rate's measured
error on clean real data, which is a few percent (k-NN manifold) or the classifier's error.
"""

import numpy as np
import pytest

from aigc_jax import data, evaluation
from aigc_jax.evaluation.features import ClassifierFeatureExtractor
from tests.training import classifier_run

PLANTED_FRACTION = 0.25


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
  """The trained oracle, the real train and test digits and their features / probabilities."""
  run = classifier_run.trained_digits_classifier(tmp_path_factory)
  oracle = ClassifierFeatureExtractor.from_state(run["results"]["state"])
  train_images, _ = data.load_split_images("digits28", "train", run["data_dir"])
  test_images, test_labels = data.load_split_images("digits28", "test", run["data_dir"])
  test_probs = np.asarray(oracle.probabilities(test_images))
  return {
    "oracle": oracle,
    "train_feats": oracle.features(train_images),
    "test_images": test_images,
    "test_labels": test_labels,
    "test_probs": test_probs,
    "test_errors": np.argmax(test_probs, axis=-1) != test_labels,
  }


def _inside(estimate, value):
  return float(estimate.ci_low) <= value <= float(estimate.ci_high)


def _planted_mix(clean, planted, seed):
  """clean and planted images shuffled together; returns (images, is_planted [N] bool)."""
  images = np.concatenate([clean, planted])
  is_planted = np.arange(len(images)) >= len(clean)
  order = np.random.default_rng(seed).permutation(len(images))
  return images[order], is_planted[order]


def _off_manifold_images(num, seed):
  """Half uniform-noise images, half blank (all-zero) images: nothing like a digit."""
  noise = np.random.default_rng(seed).random((num - num // 2, 28, 28, 1), dtype=np.float32)
  return np.concatenate([noise, np.zeros((num // 2, 28, 28, 1), np.float32)])


def test_oracle_is_accurate_on_real_test_digits(digits):
  assert digits["test_images"].shape == (300, 28, 28, 1)
  assert np.mean(digits["test_errors"]) <= 0.05
  assert digits["train_feats"].shape == (1497, 128)


def test_manifold_rate_finds_planted_off_manifold_images(digits):
  """Real = train-split features; fake = 150 held-out test digits + 50 planted (25%).

  The k-NN manifold (k = 3) of 1,497 train digits leaves out some real test digits too (about
  7% here), so the rate is biased upward: expect planted + (1 - planted) * false-positive
  rate, with the false-positive rate measured on the OTHER 150 test digits.
  """
  oracle, real = digits["oracle"], digits["train_feats"]
  calibration, held_out = digits["test_images"][:150], digits["test_images"][150:]
  clean_estimate, _ = evaluation.manifold_hallucination_rate(real, oracle.features(calibration))
  false_positive = float(clean_estimate.rate)
  assert false_positive <= 0.15

  num_planted = 50  # 50 / (150 + 50) = PLANTED_FRACTION.
  images, is_planted = _planted_mix(held_out, _off_manifold_images(num_planted, 1), seed=2)
  estimate, flags = evaluation.manifold_hallucination_rate(real, oracle.features(images))
  flags = np.asarray(flags)
  assert int(estimate.n) == 200 and int(estimate.count) == int(flags.sum())
  assert np.mean(flags[is_planted]) >= 0.95  # Found (1 of 100 noise images slipped in a run).
  assert np.mean(flags[~is_planted]) <= 0.15
  expected = PLANTED_FRACTION + (1 - PLANTED_FRACTION) * false_positive
  assert _inside(estimate, expected), (estimate.as_dict(), expected)
  assert not _inside(estimate, 1.0 - expected)  # Flags not inverted.


def test_unrecognisable_rate_finds_planted_blank_images(digits):
  """300 real test digits + 100 blank images (25%). A blank image splits the oracle's belief
  (max probability about 0.3), so all are flagged; the real digits almost never are.

  Uniform noise is NOT a planted case here: a plain softmax classifier is overconfident off
  its data and puts most noise images in one class with probability > 0.9, so
  `unrecognisable_rate` misses them; `manifold_hallucination_rate` is the rate that finds
  them (the test above).
  """
  oracle = digits["oracle"]
  blank = np.zeros((100, 28, 28, 1), np.float32)
  images, is_planted = _planted_mix(digits["test_images"], blank, seed=3)
  estimate, flags = evaluation.unrecognisable_rate(oracle.probabilities(images))
  flags = np.asarray(flags)
  assert flags[is_planted].all()
  assert np.mean(flags[~is_planted]) <= 0.02
  assert _inside(estimate, PLANTED_FRACTION), estimate.as_dict()
  # With K = 10 the top probability is at least 0.1, so a 0.1 threshold flags nothing.
  lenient, _ = evaluation.unrecognisable_rate(oracle.probabilities(images), threshold=0.1)
  assert int(lenient.count) == 0


def _swap_to_other_class(labels, fraction, seed):
  """For a `fraction` of rows, the index of another row of a different class; else itself."""
  rng = np.random.default_rng(seed)
  num = len(labels)
  swapped = np.zeros(num, bool)
  swapped[rng.choice(num, int(round(fraction * num)), replace=False)] = True
  source = np.arange(num)
  for i in np.flatnonzero(swapped):
    source[i] = rng.choice(np.flatnonzero(labels != labels[i]))
  return source, swapped


def test_reconstruction_class_flip_rate_finds_swapped_reconstructions(digits):
  """ "Reconstructions" = the 300 test digits with 25% replaced by a digit of another class."""
  oracle, labels = digits["oracle"], digits["test_labels"]
  source, swapped = _swap_to_other_class(labels, PLANTED_FRACTION, seed=4)
  reconstructions = digits["test_images"][source]
  probs = oracle.probabilities(reconstructions)

  # Against the true labels: swaps flip (unless the oracle errs on the replacement) and kept
  # digits flip exactly where the oracle errs on them.
  estimate, flags = evaluation.reconstruction_class_flip_rate(probs, labels)
  flags = np.asarray(flags)
  assert np.mean(flags[swapped]) >= 0.95
  np.testing.assert_array_equal(flags[~swapped], digits["test_errors"][~swapped])
  errors = np.mean(digits["test_errors"])
  assert _inside(estimate, PLANTED_FRACTION * (1 - errors) + (1 - PLANTED_FRACTION) * errors)
  assert _inside(estimate, PLANTED_FRACTION)

  # Against the oracle's own labels for the inputs: its errors on real data drop out, so the
  # kept reconstructions (identical images) never flip.
  own_labels = np.argmax(digits["test_probs"], axis=-1)
  estimate_own, flags_own = evaluation.reconstruction_class_flip_rate(probs, own_labels)
  flags_own = np.asarray(flags_own)
  assert not flags_own[~swapped].any()
  assert np.mean(flags_own[swapped]) >= 0.95
  assert _inside(estimate_own, PLANTED_FRACTION), estimate_own.as_dict()


def test_control_error_rate_finds_wrong_requests(digits):
  """The 300 test digits as class-conditional "samples"; 25% of the requests ask for another
  class. A wrong request is missed only when the oracle's error lands exactly on it."""
  labels, probs = digits["test_labels"], digits["test_probs"]
  rng = np.random.default_rng(5)
  wrong = np.zeros(len(labels), bool)
  wrong[rng.choice(len(labels), int(PLANTED_FRACTION * len(labels)), replace=False)] = True
  requested = np.where(wrong, (labels + rng.integers(1, 10, len(labels))) % 10, labels)
  assert (requested[wrong] != labels[wrong]).all()

  estimate, flags = evaluation.control_error_rate(probs, requested)
  flags = np.asarray(flags)
  predicted = np.argmax(probs, axis=-1)
  np.testing.assert_array_equal(flags[wrong], predicted[wrong] != requested[wrong])
  assert np.mean(flags[wrong]) >= 0.97
  np.testing.assert_array_equal(flags[~wrong], digits["test_errors"][~wrong])
  errors = np.mean(digits["test_errors"])
  assert _inside(estimate, PLANTED_FRACTION + (1 - PLANTED_FRACTION) * errors)
  assert _inside(estimate, PLANTED_FRACTION)
