"""The known-support datasets as in-memory arrays.

The arrays are computed directly by the generators the tfds builders write
(`gaussian_mixtures.split_points`, `simple_shapes.split_arrays`), so the benchmark needs no
prepared tfds folder for training data (the builders' tests check the two agree).

Which real examples are the references and floor sets of the estimators is decided by one
rule for the whole project, `aigc_jax.evaluation.reference`.
"""

import dataclasses
from typing import Dict, Tuple

import numpy as np

from aigc_jax import data
from aigc_jax.data import gaussian_mixtures, simple_shapes


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


def load(name: str) -> KnownSupportData:
  """The arrays of a known-support dataset (`gaussian_ring8`, `gaussian_grid25`,
  `simple_shapes`)."""
  spec = data.get_dataset_spec(name)
  if not spec.has_known_support:
    raise ValueError(
      f"{name!r} has no known support; the benchmark needs one of "
      f"{sorted(n for n, s in data.DATASETS.items() if s.has_known_support)}."
    )
  splits: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
  for split in ("train", "test"):
    if spec.kind == "points":
      points, modes = gaussian_mixtures.split_points(spec.mixture.name, split)
      splits[split] = (points.astype(np.float32), modes.astype(np.int32))
    else:
      images, labels = simple_shapes.split_arrays(split)
      splits[split] = (data.to_float_samples(images), labels)
  return KnownSupportData(name, spec, splits["train"], splits["test"])
