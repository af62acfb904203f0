"""Tests of the digits builder, the dataset registry and the grain input pipeline."""

import collections
import re
import socket
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

import aigc_jax.data as data
from aigc_jax.data import digits as digits_lib

D = 8  # Local devices in the batch layout (conftest forces 8 CPU devices).


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A data_dir with both digits configs prepared once for the whole session."""
  path = str(tmp_path_factory.mktemp("tfds"))
  for name in ("digits", "digits28"):
    data.num_examples(name, "train", path)
  return path


@pytest.fixture(scope="session")
def sklearn_digits():
  return load_digits()


def _records(tfds_name, split, data_dir):
  return list(tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False))


def _examples(batches):
  """Multiset of the real (mask 1) examples of device-laid-out batches: (image bytes, label)."""
  out = collections.Counter()
  for batch in batches:
    images = batch["image"].reshape((-1,) + batch["image"].shape[2:])
    for image, label, mask in zip(images, batch["label"].ravel(), batch["mask"].ravel()):
      if mask:
        out[(np.round(image * 255).astype(np.uint8).tobytes(), int(label))] += 1
  return out


def _split_examples(name, split, data_dir):
  spec = data.get_dataset_spec(name)
  return collections.Counter(
    (np.asarray(r["image"], np.uint8).tobytes(), int(r["label"]))
    for r in _records(spec.tfds_name, split, data_dir)
  )


def _iterator(name="digits", split=None, *, data_dir, **kwargs):
  """A digits iterator with small defaults; split defaults to train or test by `train`."""
  split = split or ("train" if kwargs.get("train", True) else "test")
  kwargs = {
    "global_batch_size": 64,
    "num_local_devices": D,
    "seed": 0,
    "train": True,
    "process_index": 0,
    "process_count": 1,
    **kwargs,
  }
  return data.create_iterator(name, split, data_dir=data_dir, **kwargs)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


# --- digits builder ----------------------------------------------------------------------


def test_digits_8x8_matches_sklearn_exactly(data_dir, sklearn_digits):
  train = _records("digits/8x8", "train", data_dir)
  test = _records("digits/8x8", "test", data_dir)
  assert (len(train), len(test)) == (1497, 300)
  rows = {
    s: sorted(int(r["index"]) for r in recs) for s, recs in (("train", train), ("test", test))
  }
  assert rows["test"] == list(digits_lib.split_rows()["test"])
  assert sorted(rows["train"] + rows["test"]) == list(range(1797))  # Disjoint and complete.
  for r in train + test:
    row = int(r["index"])
    expected = np.round(sklearn_digits.images[row] * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(r["image"], expected[..., None])
    assert int(r["label"]) == sklearn_digits.target[row]


def test_digits_28x28_close_to_independent_resize(data_dir, sklearn_digits):
  builder = tfds.builder("digits/28x28", data_dir=data_dir)  # Registered on import.
  assert builder.is_prepared()
  records = list(builder.as_data_source(split="test"))
  rows = np.array([int(r["index"]) for r in records])
  stored = np.stack([r["image"] for r in records]).astype(np.float32) / 255
  assert stored.shape == (300, 28, 28, 1)
  reference = jax.image.resize(
    jnp.asarray(sklearn_digits.images[rows] / 16, jnp.float32), (len(rows), 28, 28), "linear"
  )
  np.testing.assert_allclose(stored[..., 0], np.asarray(reference), atol=1.01 / 255)
  assert [int(r["label"]) for r in records] == list(sklearn_digits.target[rows])


def test_digits_preparation_survives_two_concurrent_callers(tmp_path):
  errors, sizes = [], []

  def prepare():
    try:
      sizes.append(data.num_examples("digits", "test", str(tmp_path)))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=prepare) for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors and sizes == [300, 300]
  assert tfds.builder("digits/8x8", data_dir=str(tmp_path)).is_prepared()


# --- registry ----------------------------------------------------------------------------


def test_registry_specs():
  assert data.get_dataset_spec("digits28").sample_shape == (28, 28, 1)
  assert data.get_dataset_spec("cifar10").tfds_name == "cifar10"
  assert data.get_dataset_spec("cifar10").sample_shape == (32, 32, 3)
  assert set(data.DATASETS) == {
    "digits",
    "digits28",
    "mnist",
    "fashion_mnist",
    "cifar10",
    "gaussian_ring8",
    "gaussian_grid25",
    "simple_shapes",
  }
  for name, spec in data.DATASETS.items():
    assert not hasattr(spec, "image_shape")  # One name: the old alias is gone.
    known = name in ("gaussian_ring8", "gaussian_grid25", "simple_shapes")
    assert spec.has_known_support == known == (spec.reconstruction_check is not None)
    assert spec.kind == ("points" if name.startswith("gaussian") else "image")
    assert (spec.mixture is not None) == (spec.kind == "points")
  grid = data.get_dataset_spec("gaussian_grid25")
  assert (grid.sample_shape, grid.num_classes, grid.tfds_name) == (
    (2,),
    25,
    "gaussian_mixtures/grid25",
  )


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(sample_shape=(2,), kind="pointz"), "kind"),
    (dict(sample_shape=(2,), kind="image"), "(H, W, C)"),
    (dict(sample_shape=(8, 8, 1), kind="points"), "(D,)"),
  ],
)
def test_spec_rejects_a_wrong_kind_or_shape(kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    data.DatasetSpec("x", num_classes=2, **kwargs)


def test_unknown_dataset_lists_valid_names(tmp_path):
  for call in (
    lambda: data.get_dataset_spec("mnsit"),
    lambda: _iterator("mnsit", data_dir=str(tmp_path)),
  ):
    with pytest.raises(ValueError) as info:
      call()
    message = str(info.value)
    assert "\n" not in message and "'mnsit'" in message
    assert all(name in message for name in data.DATASETS)


# --- pipeline ----------------------------------------------------------------------------


def test_train_batches_layout_ranges_and_content(data_dir):
  batches = _take(_iterator("digits28", data_dir=data_dir), 3)
  train = _split_examples("digits28", "train", data_dir)
  for batch in batches:
    assert batch["image"].shape == (D, 8, 28, 28, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (D, 8) and batch["label"].dtype == np.int32
    assert batch["mask"].shape == (D, 8) and batch["mask"].dtype == np.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert batch["image"].max() == 1.0  # Scaled by 1/255, not left in 0..255 or squashed.
    np.testing.assert_array_equal(batch["mask"], 1.0)
  seen = _examples(batches)
  assert sum(seen.values()) == 3 * 64
  assert all(example in train for example in seen)  # From the train split, pixels intact.


def test_shuffle_is_seeded_and_reshuffles_each_epoch(data_dir):
  def labels(seed, n):
    return np.concatenate(
      [
        b["label"].ravel()
        for b in _take(
          _iterator(data_dir=data_dir, seed=seed, global_batch_size=3, num_local_devices=1), n
        )
      ]
    )

  epochs = labels(seed=7, n=2 * 499).reshape(2, 1497)  # 1,497 = 499 batches of 3.
  np.testing.assert_array_equal(labels(seed=7, n=20), epochs[0, :60])
  assert not np.array_equal(labels(seed=8, n=20), epochs[0, :60])
  assert not np.array_equal(epochs[0], epochs[1])  # A new order in the second epoch ...
  np.testing.assert_array_equal(np.sort(epochs[0]), np.sort(epochs[1]))  # ... same examples.


def test_one_train_epoch_is_a_permutation_of_the_split(data_dir):
  # 1,497 examples, batches of 24: 62 full batches, the last 9 examples dropped.
  batches = list(_iterator(data_dir=data_dir, global_batch_size=24, num_epochs=1))
  assert len(batches) == 62
  seen, train = _examples(batches), _split_examples("digits", "train", data_dir)
  assert sum(seen.values()) == 62 * 24 and not seen - train  # No example twice.


def test_eval_sees_every_test_example_exactly_once(data_dir):
  batches = list(_iterator(data_dir=data_dir, train=False))
  # 300 examples in batches of 64: four full, the fifth has 44 real and 20 padding.
  assert [int(b["mask"].sum()) for b in batches] == [64, 64, 64, 64, 44]
  assert _examples(batches) == _split_examples("digits", "test", data_dir)
  padding = batches[-1]["mask"] == 0
  assert not batches[-1]["image"][padding].any() and not batches[-1]["label"][padding].any()


def test_eval_order_is_fixed(data_dir):
  first = list(_iterator(data_dir=data_dir, train=False, seed=1))
  second = list(_iterator(data_dir=data_dir, train=False, seed=2))
  for a, b in zip(first, second, strict=True):
    np.testing.assert_array_equal(a["image"], b["image"])


@pytest.mark.parametrize("train", [False, True])
def test_process_shards_are_disjoint_and_cover_the_split(data_dir, train):
  # Train: host batches of one, so the count shows every example each host reads.
  batch, devices = (2, 1) if train else (32, D)
  kwargs = dict(
    data_dir=data_dir,
    train=train,
    num_epochs=1,
    global_batch_size=batch,
    num_local_devices=devices,
    process_count=2,
  )
  shards = [list(_iterator(process_index=i, **kwargs)) for i in range(2)]
  assert len(shards[0]) == len(shards[1])  # Hosts step in lockstep.
  assert shards[0][0]["image"].shape[:2] == (devices, batch // 2 // devices)
  seen = [_examples(s) for s in shards]
  split = _split_examples("digits", "train" if train else "test", data_dir)
  if train:  # 1,497 -> 748 per host, the odd one dropped.
    assert [sum(s.values()) for s in seen] == [748, 748]
    assert not (seen[0] + seen[1]) - split  # Disjoint: no example in both shards.
  else:
    assert seen[0] + seen[1] == split  # Every test example on exactly one host.
    assert seen[0] and seen[1]


def test_state_restores_the_exact_next_batches(data_dir):
  iterator = _iterator(data_dir=data_dir, seed=3)
  _take(iterator, 30)  # Past the first epoch (23 batches of 64).
  state = iterator.get_state()
  expected = _take(iterator, 3)
  restored = _iterator(data_dir=data_dir, seed=3)
  restored.set_state(state)
  for a, b in zip(expected, _take(restored, 3)):
    for key in ("image", "label", "mask"):
      np.testing.assert_array_equal(a[key], b[key])
  fresh = next(_iterator(data_dir=data_dir, seed=3))
  assert not np.array_equal(fresh["image"], expected[0]["image"])  # set_state did something.


@pytest.mark.parametrize("batch, devices, processes", [(30, 8, 1), (24, 8, 2), (0, 8, 1)])
def test_batch_size_not_divisible_raises(tmp_path, batch, devices, processes):
  with pytest.raises(ValueError, match="multiple of process_count") as info:
    _iterator(
      data_dir=str(tmp_path),
      global_batch_size=batch,
      num_local_devices=devices,
      process_count=processes,
    )
  assert "\n" not in str(info.value)
  assert not list(tmp_path.iterdir())  # Checked before any preparation.


def test_catalog_dataset_unavailable_offline_fails_fast(tmp_path, monkeypatch):
  def offline(*args, **kwargs):
    raise socket.gaierror("offline (test)")

  monkeypatch.setattr(socket, "getaddrinfo", offline)  # Offline even where there is a network.
  data_dir = tmp_path / "tfds"
  start = time.time()
  with pytest.raises(data.DatasetUnavailableError) as info:
    _iterator("mnist", data_dir=str(data_dir))
  assert time.time() - start < 30
  message = str(info.value)
  assert "'mnist'" in message and "tfds build mnist" in message and "\n" not in message
  assert not data_dir.exists()  # Partial download and dataset folders removed.


def test_catalog_dataset_read_through_tfds_mock(tmp_path):
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    assert data.num_examples("cifar10", "test", str(tmp_path)) == 40
    eval_batches = list(
      _iterator("cifar10", "test", data_dir=str(tmp_path), train=False, global_batch_size=16)
    )
    train_batch = next(_iterator("mnist", data_dir=str(tmp_path), global_batch_size=16))
  assert [int(b["mask"].sum()) for b in eval_batches] == [16, 16, 8]
  assert eval_batches[0]["image"].shape == (D, 2, 32, 32, 3)
  assert eval_batches[0]["image"].std() > 0.1  # Random mock pixels, not padding zeros.
  assert train_batch["image"].shape == (D, 2, 28, 28, 1)
  assert 0 <= train_batch["label"].min() and train_batch["label"].max() < 10
  assert not list(tmp_path.iterdir())  # Mocked: nothing downloaded or prepared.


def test_train_indices_are_the_seeded_epoch_permutations_run_on_across_epochs():
  from aigc_jax.data.pipeline import _IndexBatches  # pylint: disable=import-outside-toplevel

  size, batch_size, seed = 10, 4, 7
  # Reference: epoch e visits the split in the order rng([seed, e]).permutation(size); the
  # batches cut that stream of indices in fours, across epoch ends.
  stream = np.concatenate([np.random.default_rng([seed, e]).permutation(size) for e in range(4)])
  batches = _IndexBatches(size, batch_size, seed)
  for i in range(9):
    np.testing.assert_array_equal(batches[i], stream[i * batch_size : (i + 1) * batch_size])
  assert len(_IndexBatches(size, batch_size, seed, num_epochs=3)) == 7  # 30 // 4: last 2 dropped.
  np.testing.assert_array_equal(_IndexBatches(size, batch_size, None)[2], [8, 9, 10, 11])
  assert len(_IndexBatches(size, batch_size, None)) == 3  # Eval: padded to whole batches.
