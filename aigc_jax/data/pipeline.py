"""The input pipeline: tfds array_record split -> host memory -> grain -> device-laid-out batches.

`create_iterator` is the one entry point. Every batch it yields is a dict of numpy arrays:

  image: [num_local_devices, per_device, *sample_shape] float32, the samples: images
         [..., H, W, C] in [0, 1] (stored uint8, scaled by 1/255) or points [..., D]
         (stored float32, unchanged). The key is "image" for every dataset kind.
  label: [num_local_devices, per_device] int32 in [0, num_classes)
  mask:  [num_local_devices, per_device] float32, 1 for a real example, 0 for padding

with `per_device = global_batch_size // (process_count * num_local_devices)`. Each host
process reads its own slice of every global batch. No TensorFlow is needed to read.
"""

import contextlib
import importlib.util
import io
import os
import shutil
import sys
from typing import Any
from unittest import mock

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import logging as absl_logging
from tensorflow_datasets.core.download import downloader

from aigc_jax import console
from aigc_jax.data.registry import get_dataset_spec
from aigc_jax.errors import ConfigError, UserError


class DatasetUnavailableError(UserError, RuntimeError):
  """A catalog dataset is neither prepared in the data_dir nor preparable here."""


def default_data_dir() -> str:
  """$TFDS_DATA_DIR if set, else ~/tensorflow_datasets (tfds's own default)."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


@contextlib.contextmanager
def _remove_leftovers_on_failure(data_dir: str, dataset_name: str):
  """Removes what a failed `download_and_prepare` created (it leaves partial folders behind)."""
  dataset_dir = os.path.join(data_dir, dataset_name)
  downloads = os.path.join(data_dir, "downloads")
  candidates = (data_dir, dataset_dir, downloads, os.path.join(downloads, dataset_name))
  created = [p for p in candidates if not os.path.exists(p)]
  try:
    yield
  except BaseException:
    for path in created:
      shutil.rmtree(path, ignore_errors=True)
    if os.path.isdir(dataset_dir):  # Dataset folder existed: drop only incomplete versions.
      for entry in os.listdir(dataset_dir):
        if entry.startswith("incomplete."):  # tfds names them incomplete.<random>_<version>.
          shutil.rmtree(os.path.join(dataset_dir, entry), ignore_errors=True)
    raise


def _prepare_catalog(builder, name: str, data_dir: str) -> None:
  """Downloads and prepares a tfds catalog dataset, or raises DatasetUnavailableError."""
  try:
    # Offline, the default 10 retries with backoff take minutes; fail at once instead.
    with (
      mock.patch.object(downloader, "MAX_RETRIES", 0),
      _remove_leftovers_on_failure(data_dir, builder.name),
    ):
      builder.download_and_prepare(file_format="array_record")
  except Exception as e:
    extra = (
      ""
      if importlib.util.find_spec("tensorflow")
      else " (preparing it needs TensorFlow: pip install 'aigc-jax[catalog]')"
    )
    raise DatasetUnavailableError(
      f"Dataset {name!r} is not prepared in {data_dir} and could not be prepared here "
      f"({type(e).__name__}); prepare it with `tfds build {builder.name} "
      f"--file_format=array_record --data_dir=DIR`{extra}, then pass that directory as "
      f"--config.dataset.data_dir (or --data_dir to experiments.evaluate)."
    ) from e


@contextlib.contextmanager
def _quiet_tfds():
  """Silences tfds while it prepares a dataset from local data.

  It would print a "Downloading and preparing dataset Unknown size" banner, a warning about
  the empty folder it is about to fill, and five progress bars: none of it true or useful
  when nothing is downloaded. The caller says what happens in one line instead.
  """
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.display_progress_bar(True)
    absl_logging.set_verbosity(verbosity)


def _prepare_offline(builder, tfds_name: str, data_dir: str) -> None:
  """Prepares a dataset that needs no download (digits); safe if several processes race."""
  console.event(
    f"Preparing {tfds_name} in {data_dir} (first use; generated locally, nothing is downloaded)."
  )
  try:
    with _quiet_tfds():
      builder.download_and_prepare(file_format="array_record")
  except Exception:
    # tfds writes into a private *.incomplete* folder and renames it at the end; a process
    # that loses the race fails on the rename, but then the dataset is there.
    if not tfds.builder(tfds_name, data_dir=data_dir).is_prepared():
      raise


def load_data_source(name: str, split: str, data_dir: str | None = None):
  """Returns the tfds array_record data source of a project dataset split.

  The project's own datasets (digits, the Gaussian mixtures, simple_shapes) are prepared on
  first use; catalog datasets are read if prepared, else downloaded and prepared, else
  DatasetUnavailableError. Records are dicts of numpy arrays (`image` [H, W, C] uint8 or
  `point` [D] float32, by the spec's kind; `label` int).
  """
  spec = get_dataset_spec(name)
  data_dir = os.path.expanduser(os.fspath(data_dir or default_data_dir()))
  builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
  if spec.prepared_offline:
    with _quiet_tfds():  # Its "no dataset_info.json" warning on first use is not news.
      prepared = builder.is_prepared()
  else:
    prepared = builder.is_prepared()
  if not prepared:
    # Under tfds.testing.mock_data, download_and_prepare is a no-op and as_data_source fakes.
    if spec.prepared_offline:
      _prepare_offline(builder, spec.tfds_name, data_dir)
    else:
      _prepare_catalog(builder, name, data_dir)
  return builder.as_data_source(split=split)


def num_examples(name: str, split: str, data_dir: str | None = None) -> int:
  """Number of examples in a split (all hosts together), preparing offline datasets if needed."""
  return len(load_data_source(name, split, data_dir))


_READ_CHUNK = 10_000  # Records per read of a split into memory.
# The record feature that holds the sample, and its stored dtype, by dataset kind.
_SAMPLE_FEATURE = {"image": ("image", np.uint8), "points": ("point", np.float32)}


def _read_records(source, indices: range) -> list:
  """Records `indices` of a tfds data source, read together (`__getitems__`: about 25 us a
  record, 4x faster than `source[i]` one at a time); one at a time where a source cannot
  (tfds.testing.mock_data's)."""
  try:
    return source.__getitems__(list(indices))
  except (AttributeError, TypeError):
    return [source[i] for i in indices]


def load_split_arrays(
  name: str, split: str, data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """A whole split in host memory, as stored: samples and labels `[N]` int32.

  Samples are images `[N, H, W, C]` uint8 or points `[N, D]` float32 (`to_float_samples`
  turns either into model inputs). The datasets here are small (MNIST's train split is
  47 MB), and batches gathered from arrays cost a fraction of a millisecond, where grain
  reading records one by one cost 85 ms per batch of 128 and was most of a VAE step's time
  on a CPU.
  """
  spec = get_dataset_spec(name)
  feature, dtype = _SAMPLE_FEATURE[spec.kind]
  source = load_data_source(name, split, data_dir)
  samples = np.zeros((len(source),) + spec.sample_shape, dtype)
  labels = np.zeros((len(source),), np.int32)
  for start in range(0, len(source), _READ_CHUNK):
    indices = range(start, min(start + _READ_CHUNK, len(source)))
    records = _read_records(source, indices)
    samples[indices.start : indices.stop] = np.stack(
      [np.asarray(r[feature], dtype) for r in records]
    ).reshape((-1,) + spec.sample_shape)
    labels[indices.start : indices.stop] = [r["label"] for r in records]
  return samples, labels


def to_float_samples(samples: np.ndarray) -> np.ndarray:
  """Stored samples -> model inputs: uint8 images / 255 as float32; float points unchanged."""
  if samples.dtype == np.uint8:
    return samples.astype(np.float32) / np.float32(255.0)
  return samples.astype(np.float32)


def load_split_images(
  name: str, split: str, data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """A whole split for evaluation: samples float32 (images `[N, H, W, C]` in [0, 1], or
  points `[N, D]`) and labels `[N]`."""
  samples, labels = load_split_arrays(name, split, data_dir)
  return to_float_samples(samples), labels


class _IndexBatches(grain.MapDataset):
  """Batch i of global example indices `[batch_size]` int64, made with numpy in one go.

  Train (`seed` given): epoch e visits the split in the order of a permutation drawn from
  (seed, e); batches run on across epoch ends, and after `num_epochs` epochs (None: never)
  the incomplete last batch is dropped. Eval (`seed` None): 0, 1, ... in order, padded to
  whole batches with indices >= size. (grain's `shuffle` draws each index by itself, about
  30 us apiece: 4 ms per batch of 128, as long as a small model's step; this takes a few
  microseconds per batch.)
  """

  def __init__(self, size: int, batch_size: int, seed: int | None, num_epochs: int | None = None):
    super().__init__()
    self._size, self._batch_size, self._seed = size, batch_size, seed
    if seed is None:
      self._length = -(-size // batch_size)
    elif num_epochs is None:
      self._length = sys.maxsize
    else:
      self._length = num_epochs * size // batch_size
    self._permutations: dict[int, np.ndarray] = {}  # The latest epochs' orders.

  def __len__(self) -> int:
    return self._length

  def __str__(self) -> str:  # Recorded in grain checkpoints: keep it free of addresses.
    return (
      f"_IndexBatches(size={self._size}, batch_size={self._batch_size}, "
      f"seed={self._seed}, batches={self._length})"
    )

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._permutations:
      if len(self._permutations) > 2:
        self._permutations.pop(min(self._permutations))
      rng = np.random.default_rng([self._seed, epoch])
      self._permutations[epoch] = rng.permutation(self._size)
    return self._permutations[epoch]

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    positions = np.arange(index * self._batch_size, (index + 1) * self._batch_size)
    if self._seed is None:
      return positions
    epochs = positions // self._size
    indices = np.empty_like(positions)
    for epoch in np.unique(epochs):  # One or two epochs per batch (more if it exceeds one).
      in_epoch = epochs == epoch
      indices[in_epoch] = self._permutation(int(epoch))[positions[in_epoch] % self._size]
    return indices


class _GatherBatch(grain.transforms.Map):
  """Global batch of indices -> this host's part, laid out `[num_local_devices, b, ...]`.

  Host p takes the p-th contiguous slice of `host_batch_size` indices of each global batch.
  Indices at or past the split's end are padding: zero sample, label 0, mask 0.
  """

  def __init__(
    self,
    images: np.ndarray,
    labels: np.ndarray,
    num_local_devices: int,
    process_index: int,
    host_batch_size: int,
  ):
    self._images, self._labels = images, labels
    self._num_local_devices = num_local_devices
    self._host_slice = slice(process_index * host_batch_size, (process_index + 1) * host_batch_size)

  def __repr__(self) -> str:  # Recorded in grain checkpoints: keep it free of addresses.
    return (
      f"_GatherBatch(records={len(self._labels)}, devices={self._num_local_devices}, "
      f"host_slice={self._host_slice.start}:{self._host_slice.stop})"
    )

  def map(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    indices = np.asarray(indices)[self._host_slice]
    real = indices < len(self._labels)
    safe = np.where(real, indices, 0)
    images = to_float_samples(self._images[safe])
    images[~real] = 0.0
    batch = {
      "image": images,
      "label": np.where(real, self._labels[safe], 0).astype(np.int32),
      "mask": real.astype(np.float32),
    }
    return {k: v.reshape((self._num_local_devices, -1) + v.shape[1:]) for k, v in batch.items()}


def create_iterator(
  name: str,
  split: str,
  *,
  global_batch_size: int,
  num_local_devices: int,
  seed: int,
  train: bool,
  data_dir: str | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
  num_epochs: int | None = None,
  arrays: tuple[np.ndarray, np.ndarray] | None = None,
) -> Any:
  """Returns a grain dataset iterator (with get_state/set_state) of device-laid-out batches.

  The split is read into host memory once (`load_split_arrays`); each batch's example indices
  are drawn with numpy (`_IndexBatches`) and the batch is gathered from the arrays, in the
  calling thread (no reader threads: nothing here waits on I/O).

  Args:
    name: project dataset name (see `registry.DATASETS`).
    split: tfds split name, e.g. `spec.train_split`.
    global_batch_size: examples per step over all hosts; must be divisible by
      process_count * num_local_devices.
    num_local_devices: devices of this host; leading axis of every array.
    seed: shuffle seed in [0, 2**32); used only when train.
    train: True: shuffled (a new order each epoch, fixed by seed), repeated num_epochs times
      (None: forever), incomplete last batch dropped, mask all ones. False: file order, one
      pass, the end padded with zero examples of mask 0 so that every example of the split
      is yielded exactly once and every host yields the same number of batches.
    data_dir: tfds data_dir; default `default_data_dir()`.
    process_index, process_count: this host's shard; default jax.process_index() /
      jax.process_count(). Host p reads the p-th slice of every global batch, so the hosts
      step in lockstep and their batches together are exactly the global batch.
    num_epochs: passes over the data when train (None: forever); ignored for eval.
    arrays: the split as `load_split_arrays` returns it, when the caller already holds it
      (the training loop evaluates many times on one test split); None reads it.

  Returns:
    Iterator of dicts: image [D, b, *sample_shape] float32 (images in [0, 1], points as
    stored), label [D, b] int32, mask [D, b] float32, with D = num_local_devices,
    b = per-device batch size.
  """
  get_dataset_spec(name)  # Unknown names fail before anything is read.
  if process_index is None or process_count is None:
    import jax  # Only to find this host's shard; the pipeline itself never touches devices.

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size <= 0 or global_batch_size % (process_count * num_local_devices):
    raise ConfigError(
      f"global_batch_size {global_batch_size} must be a positive multiple of "
      f"process_count * num_local_devices = {process_count} * {num_local_devices}."
    )
  host_batch_size = global_batch_size // process_count

  images, labels = arrays if arrays is not None else load_split_arrays(name, split, data_dir)
  size = len(labels)
  indices = _IndexBatches(size, global_batch_size, seed if train else None, num_epochs)
  batches = indices.map(
    _GatherBatch(images, labels, num_local_devices, process_index, host_batch_size)
  )
  return iter(batches.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))
