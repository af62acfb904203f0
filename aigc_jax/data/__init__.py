"""Datasets and the input pipeline.

Importing this package registers the tfds `digits` builder (`digits/8x8`, `digits/28x28`).
"""
from aigc_jax.data import digits  # noqa: F401  (registers the tfds builder)
from aigc_jax.data.pipeline import (DatasetUnavailableError, create_iterator,
                                    default_data_dir, load_data_source, load_split_arrays,
                                    load_split_images, num_examples)
from aigc_jax.data.registry import DATASETS, DatasetSpec, get_dataset_spec

__all__ = ["DATASETS", "DatasetSpec", "DatasetUnavailableError", "create_iterator",
           "default_data_dir", "get_dataset_spec", "load_data_source", "load_split_arrays",
           "load_split_images", "num_examples"]
