"""Datasets and the input pipeline.

Importing this package registers the project's tfds builders: `digits` (`digits/8x8`,
`digits/28x28`), `gaussian_mixtures` (`gaussian_mixtures/ring8`, `gaussian_mixtures/grid25`)
and `simple_shapes`, all generated offline without TensorFlow.
"""

from aigc_jax.data import digits  # noqa: F401  (registers the tfds builder)
from aigc_jax.data import gaussian_mixtures  # noqa: F401  (registers the tfds builder)
from aigc_jax.data import simple_shapes  # noqa: F401  (registers the tfds builder)
from aigc_jax.data.gaussian_mixtures import GaussianMixture
from aigc_jax.data.pipeline import (
  DatasetUnavailableError,
  create_iterator,
  default_data_dir,
  load_data_source,
  load_split_arrays,
  load_split_images,
  num_examples,
  to_float_samples,
)
from aigc_jax.data.registry import DATASETS, DatasetSpec, get_dataset_spec

__all__ = [
  "DATASETS",
  "DatasetSpec",
  "DatasetUnavailableError",
  "GaussianMixture",
  "create_iterator",
  "default_data_dir",
  "get_dataset_spec",
  "load_data_source",
  "load_split_arrays",
  "load_split_images",
  "num_examples",
  "to_float_samples",
]
