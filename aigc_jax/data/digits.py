"""UCI handwritten digits (the copy scikit-learn ships) as a TensorFlow-free tfds builder.

Source: `sklearn.datasets.load_digits()`, 1,797 grey images of 8x8 with integer values 0..16
and labels 0..9; nothing is downloaded. Registered as tfds `digits` with two configs:

* `digits/8x8`: native resolution, `uint8 = round(v * 255 / 16)`, so 0..16 -> 0..255 exactly.
* `digits/28x28`: for networks built for 28x28 (MNIST-sized) inputs:
  `v / 16` as float32 -> PIL bilinear resize (mode "F", half-pixel centres) to 28x28 ->
  clip to [0, 1] -> `uint8 = round(x * 255)`.

Features (no TensorFlow needed to write or read them):
  image: [H, W, 1] uint8 in [0, 255]; label: ClassLabel(10); index: int32, the row in
  `load_digits()`, kept so an example can be traced back to its source.

Splits, identical on every machine and numpy version: rows are ordered by the SHA-256 of
`"digits-{row}"`; the first 300 in that order are `test`, the other 1,497 `train`.
"""

import hashlib

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

NUM_EXAMPLES = 1797
NUM_TEST = 300
_MAX_VALUE = 16.0


def split_rows() -> dict[str, np.ndarray]:
  """Returns {'train': [1497] int, 'test': [300] int}: sorted `load_digits()` row numbers."""
  order = sorted(
    range(NUM_EXAMPLES), key=lambda i: hashlib.sha256(f"digits-{i}".encode()).hexdigest()
  )
  return {"train": np.sort(order[NUM_TEST:]), "test": np.sort(order[:NUM_TEST])}


def to_uint8(images: np.ndarray, size: int) -> np.ndarray:
  """Scales `load_digits()` images to stored pixels.

  Args:
    images: [N, 8, 8] numbers in 0..16.
    size: 8 (no resize) or the output side length (bilinear resize).

  Returns:
    [N, size, size, 1] uint8 in [0, 255].
  """
  images = np.asarray(images, np.float32)
  if size == 8:
    return np.round(images * (255.0 / _MAX_VALUE)).astype(np.uint8)[..., None]
  out = np.empty((len(images), size, size), np.float32)
  for i, image in enumerate(images / _MAX_VALUE):
    resized = Image.fromarray(image).resize((size, size), Image.BILINEAR)
    out[i] = np.asarray(resized, np.float32)
  return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)[..., None]


class DigitsConfig(tfds.core.BuilderConfig):
  """A config naming the stored image side length."""

  def __init__(self, *, size: int, **kwargs):
    super().__init__(**kwargs)
    self.size = size


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's UCI handwritten digits, 8x8 or resized to 28x28; see the module docstring."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: 8x8 and 28x28 configs, 1,497/300 split."}
  BUILDER_CONFIGS = [
    DigitsConfig(name="8x8", size=8, description="Native 8x8, round(v * 255 / 16)."),
    DigitsConfig(
      name="28x28", size=28, description="Bilinear (PIL) resize of v / 16 to 28x28, round(x * 255)."
    ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.size
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8),
          "label": tfds.features.ClassLabel(num_classes=10),
          "index": tfds.features.Scalar(dtype=np.int32),
        }
      ),
      supervised_keys=("image", "label"),
      homepage="https://archive.ics.uci.edu/dataset/80",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: scikit-learn ships the data.
    return {split: self._generate_examples(rows) for split, rows in split_rows().items()}

  def _generate_examples(self, rows):
    from sklearn.datasets import load_digits  # Heavy import, only needed to prepare.

    digits = load_digits()
    images = to_uint8(digits.images[rows], self.builder_config.size)
    for row, image, label in zip(rows, images, digits.target[rows]):
      yield int(row), {"image": image, "label": int(label), "index": int(row)}
