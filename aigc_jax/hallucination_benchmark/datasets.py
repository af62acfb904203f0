"""The known-support datasets as in-memory arrays, and the real sets each estimator uses.

The arrays are computed directly by the generators the tfds builders write
(`gaussian_mixtures.split_points`, `simple_shapes.split_arrays`), so the benchmark needs no
prepared tfds folder for training data (the builders' tests check the two agree).

Reference and floor sets. Each estimated rate compares samples with a REFERENCE set of real
data; its FLOOR is the same estimator applied to held-out real data (disjoint from the
reference) treated as if it were generated: what the estimator reports for a perfect model.
  reference "test":  the test split (mixtures: its first `reference_size` points);
                     floor set: training-split data, as many as the samples.
  reference "train": the training split (mixtures: its first 10,000 points);
                     floor set: test-split data not in the test reference.
"""
import dataclasses
from typing import Dict, Tuple

import numpy as np

from aigc_jax import data
from aigc_jax.data import gaussian_mixtures, simple_shapes

MIXTURE_TRAIN_REFERENCE_SIZE = 10_000


@dataclasses.dataclass(frozen=True)
class KnownSupportData:
  """A known-support dataset in memory.

  Attributes:
    name: project dataset name.
    spec: its `DatasetSpec` (support_check, reconstruction_check, mixture, kind).
    train, test: (samples [N, *sample_shape] float32 (images in [0, 1]), labels [N] int32).
  """
  name: str
  spec: data.DatasetSpec
  train: Tuple[np.ndarray, np.ndarray]
  test: Tuple[np.ndarray, np.ndarray]

  def reference_and_floor(self, reference: str, num_samples: int, test_reference_size: int
                          ) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """(reference samples, (floor samples, floor labels)) for reference "test" or "train"."""
    (train_x, train_y), (test_x, test_y) = self.train, self.test
    points = self.spec.kind == "points"
    if reference == "test":
      size = test_reference_size if points else len(test_x)
      return test_x[:size], (train_x[:num_samples], train_y[:num_samples])
    if reference == "train":
      size = MIXTURE_TRAIN_REFERENCE_SIZE if points else len(train_x)
      start = test_reference_size if points else 0
      held_out = slice(start, start + num_samples)
      return train_x[:size], (test_x[held_out], test_y[held_out])
    raise ValueError(f"reference must be 'test' or 'train', got {reference!r}")


def load(name: str) -> KnownSupportData:
  """The arrays of a known-support dataset (`gaussian_ring8`, `gaussian_grid25`,
  `simple_shapes`)."""
  spec = data.get_dataset_spec(name)
  if not spec.has_known_support:
    raise ValueError(f"{name!r} has no known support; the benchmark needs one of "
                     f"{sorted(n for n, s in data.DATASETS.items() if s.has_known_support)}.")
  splits: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
  for split in ("train", "test"):
    if spec.kind == "points":
      points, modes = gaussian_mixtures.split_points(spec.mixture.name, split)
      splits[split] = (points.astype(np.float32), modes.astype(np.int32))
    else:
      images, labels = simple_shapes.split_arrays(split)
      splits[split] = (data.to_float_samples(images), labels)
  return KnownSupportData(name, spec, splits["train"], splits["test"])
