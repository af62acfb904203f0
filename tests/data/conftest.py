"""Fixtures of the data tests: the known-support datasets, built once per session."""

import pytest

import aigc_jax.data as data


@pytest.fixture(scope="session")
def known_support_data_dir(tmp_path_factory):
  """A data_dir with `gaussian_ring8` and `simple_shapes` prepared (about 10 s: tfds writes
  125,000 ring records one at a time). `gaussian_grid25` shares the ring's builder code and
  is checked through `gaussian_mixtures.split_points`, which that builder writes."""
  path = str(tmp_path_factory.mktemp("tfds_known_support"))
  for name in ("gaussian_ring8", "simple_shapes"):
    data.num_examples(name, "test", path)
  return path
