"""Tests of the 2-D Gaussian mixtures: PacGAN's settings, determinism, the exact validity check."""

import hashlib
import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

import aigc_jax.data as data
from aigc_jax.data import gaussian_mixtures as gm

D = 8  # Local devices in the batch layout (conftest forces 8 CPU devices).


def test_modes_and_stds_are_pacgans():
  # Written out from the authors' config.py files, not from the module's formulas.
  angles = np.arange(8) * np.pi / 4
  np.testing.assert_allclose(gm.RING8.means, np.stack([np.cos(angles), np.sin(angles)], 1))
  np.testing.assert_allclose(np.linalg.norm(gm.RING8.means, axis=1), 1.0)
  assert gm.RING8.std == 0.01 and gm.GRID25.std == 0.05
  grid = {(int(x), int(y)) for x, y in gm.GRID25.means}
  assert grid == set(itertools.product([-4, -2, 0, 2, 4], repeat=2))
  assert gm.TRUE_MIXTURE_VALID_FRACTION == pytest.approx(1 - np.exp(-4.5), abs=1e-15)
  assert gm.TRUE_MIXTURE_VALID_FRACTION == pytest.approx(0.98889, abs=1e-5)


# SHA-256 of points.tobytes() + modes.tobytes(), first 16 hex digits, recorded when the
# splits were first generated: a change means the data changed on this machine or version.
FINGERPRINTS = {
  ("ring8", "train"): "7157aee35125e1c1",
  ("ring8", "test"): "54015b99fb08c586",
  ("grid25", "train"): "bb3ca4a2959b3534",
  ("grid25", "test"): "50cec9a5f476df16",
}


@pytest.mark.parametrize("name, split", sorted(FINGERPRINTS))
def test_splits_are_the_same_bytes_everywhere(name, split):
  points, modes = gm.split_points(name, split)
  assert points.shape == (gm.SPLIT_SIZES[split], 2) and points.dtype == np.float32
  assert modes.dtype == np.int32
  digest = hashlib.sha256(points.tobytes() + modes.tobytes()).hexdigest()[:16]
  assert digest == FINGERPRINTS[name, split]
  # Stored values are multiples of 2^-20, so the float32 cast was exact.
  np.testing.assert_array_equal(
    points.astype(np.float64) * 2**20, np.round(points.astype(np.float64) * 2**20)
  )


@pytest.mark.parametrize("mixture", [gm.RING8, gm.GRID25], ids=lambda m: m.name)
def test_train_split_follows_the_mixture(mixture):
  points, modes = gm.split_points(mixture.name, "train")
  num, k = len(points), mixture.num_modes
  counts = np.bincount(modes, minlength=k)
  # Uniform weights: each count within 5 binomial standard deviations of n / K.
  assert np.all(np.abs(counts - num / k) < 5 * np.sqrt(num * (1 / k) * (1 - 1 / k)))
  residuals = (points - mixture.means[modes]).astype(np.float64) / mixture.std  # ~ N(0, I).
  for mode in range(k):
    r = residuals[modes == mode]
    assert np.all(np.abs(r.mean(axis=0)) < 5 / np.sqrt(len(r)))  # Centred on its mode.
    np.testing.assert_allclose(r.std(axis=0), 1.0, atol=5 * np.sqrt(0.5 / len(r)))
  assert abs(np.corrcoef(residuals.T)[0, 1]) < 5 / np.sqrt(num)  # Isotropic.
  # The validity floor: P(chi2_2 < 9) of the true mixture, within 5 standard errors.
  valid = mixture.support_check(points)
  floor = gm.TRUE_MIXTURE_VALID_FRACTION
  assert abs(valid.mean() - floor) < 5 * np.sqrt(floor * (1 - floor) / num)
  # The label is the mode drawn from, which is also the nearest mode of every point.
  np.testing.assert_array_equal(mixture.nearest_mode(points)[0], modes)


@pytest.mark.parametrize("mixture", [gm.RING8, gm.GRID25], ids=lambda m: m.name)
def test_support_check_is_a_three_sigma_ball_around_each_mode(mixture):
  sigma = mixture.std
  directions = np.array([[1, 0], [0, -1], [0.6, 0.8], [-0.28, 0.96]])
  cases = []  # (point, expected validity)
  for mean in mixture.means:
    for direction in directions:
      for radius, expected in ((0.0, True), (2.99, True), (3.01, False), (10.0, False)):
        cases.append((mean + radius * sigma * direction, expected))
  cases.append((np.array([100.0, -100.0]), False))
  points = np.array([p for p, _ in cases])
  np.testing.assert_array_equal(mixture.support_check(points), [e for _, e in cases])
  # Mahalanobis distance, not Euclidean, and divided by this mixture's own std.
  modes, distances = mixture.nearest_mode(mixture.means[:1] + [[0.0, 1.5 * sigma]])
  assert modes[0] == 0 and distances[0] == pytest.approx(1.5)


def test_images_given_to_a_mixture_check_are_one_clear_error():
  for samples in (np.zeros((4, 32, 32, 1)), np.zeros((4, 3)), np.zeros(8)):
    with pytest.raises(ValueError, match=r"ring8 samples must be points \[N, 2\]") as info:
      gm.RING8.support_check(samples)
    assert "\n" not in str(info.value)


def test_reconstruction_check_needs_the_same_high_quality_mode():
  means, sigma = gm.RING8.means, gm.RING8.std
  inputs = means[[0, 0, 0, 3]] + [[sigma, 0]] * 4
  reconstructions = np.stack(
    [
      means[0],  # Same mode: kept.
      means[0] + [0, 2.5 * sigma],  # Same mode, still within 3.
      means[1],  # Another mode: hallucinated.
      means[3] + [0, 4 * sigma],
    ]
  )  # Right mode, off it.
  np.testing.assert_array_equal(
    gm.RING8.reconstruction_check(inputs, reconstructions), [True, True, False, False]
  )


def test_tfds_records_and_batches_are_the_points_unchanged(known_support_data_dir):
  spec = data.get_dataset_spec("gaussian_ring8")
  assert spec.kind == "points" and spec.sample_shape == (2,) and spec.num_classes == 8
  assert spec.mixture is gm.RING8 and spec.support_check == gm.RING8.support_check
  records = tfds.data_source(
    "gaussian_mixtures/ring8", split="test", data_dir=known_support_data_dir, download=False
  )
  points, modes = gm.split_points("ring8", "test")
  assert len(records) == 25_000
  np.testing.assert_array_equal(records[7]["point"], points[7])  # Generation order kept.
  stored, labels = data.load_split_arrays("gaussian_ring8", "test", known_support_data_dir)
  np.testing.assert_array_equal(stored, points)
  np.testing.assert_array_equal(labels, modes)
  batches = list(
    data.create_iterator(
      "gaussian_ring8",
      "test",
      global_batch_size=4096,
      num_local_devices=D,
      seed=0,
      train=False,
      process_index=0,
      process_count=1,
      arrays=(stored, labels),
    )
  )
  batch = batches[0]
  assert batch["image"].shape == (D, 512, 2) and batch["image"].dtype == np.float32
  real = np.concatenate([b["mask"].ravel() for b in batches]) == 1
  yielded = np.concatenate([b["image"].reshape(-1, 2) for b in batches])[real]
  np.testing.assert_array_equal(yielded, points)  # Not scaled by 1/255.
  np.testing.assert_array_equal(np.concatenate([b["label"].ravel() for b in batches])[real], modes)
