"""The datasets configs can name (`config.dataset`), and what the pipeline needs to know of each."""

import dataclasses
from typing import Callable, Optional

import numpy as np

from aigc_jax.data import gaussian_mixtures, shapes_parser, simple_shapes
from aigc_jax.errors import UnknownNameError
from aigc_jax.registry import unknown_name_message

KINDS = ("image", "points")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How a project dataset name maps onto tfds, and what is known about its support.

  Attributes:
    tfds_name: name for `tfds.builder`, config included (`digits/28x28`).
    sample_shape: shape of one sample as the pipeline yields it: (H, W, C) for images,
      (D,) for points.
    num_classes: labels are ints in [0, num_classes).
    train_split: tfds split used for training.
    test_split: tfds split used for evaluation.
    prepared_offline: True when the builder needs no download and no TensorFlow
      (the pipeline prepares it on first use); catalog datasets must be prepared beforehand
      or downloaded, which needs the `catalog` extra (TensorFlow).
    kind: "image" (stored uint8, yielded as float32 in [0, 1]) or "points" (stored and
      yielded as float32 coordinates, unchanged).
    support_check: for a dataset whose support is known exactly, the rule that says which
      samples belong to it: `check(samples [N, *sample_shape] float32) -> [N] bool`,
      True = valid (the evaluation layer's `SupportCheck`); None when unknown.
    reconstruction_check: for such a dataset, `check(inputs, reconstructions) -> [N] bool`,
      True = the reconstruction keeps the input's content; None when unknown.
    mixture: the `GaussianMixture` the points are drawn from (its modes and standard
      deviations, for the mode-collapse metrics); None for other datasets.
  """

  tfds_name: str
  sample_shape: tuple[int, ...]
  num_classes: int
  train_split: str = "train"
  test_split: str = "test"
  prepared_offline: bool = False
  kind: str = "image"
  support_check: Optional[Callable[[np.ndarray], np.ndarray]] = None
  reconstruction_check: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None
  mixture: Optional[gaussian_mixtures.GaussianMixture] = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"DatasetSpec kind must be one of {KINDS}, got {self.kind!r}")
    if self.kind == "image" and len(self.sample_shape) != 3:
      raise ValueError(
        f"an image dataset's sample_shape must be (H, W, C), got {self.sample_shape}"
      )
    if self.kind == "points" and len(self.sample_shape) != 1:
      raise ValueError(f"a points dataset's sample_shape must be (D,), got {self.sample_shape}")

  @property
  def has_known_support(self) -> bool:
    """Whether a hallucination can be counted exactly on this dataset (`support_check` set)."""
    return self.support_check is not None


def _mixture_spec(mixture: gaussian_mixtures.GaussianMixture) -> DatasetSpec:
  return DatasetSpec(
    f"gaussian_mixtures/{mixture.name}",
    (mixture.dimension,),
    mixture.num_modes,
    prepared_offline=True,
    kind="points",
    support_check=mixture.support_check,
    reconstruction_check=mixture.reconstruction_check,
    mixture=mixture,
  )


DATASETS: dict[str, DatasetSpec] = {
  "digits": DatasetSpec("digits/8x8", (8, 8, 1), 10, prepared_offline=True),
  "digits28": DatasetSpec("digits/28x28", (28, 28, 1), 10, prepared_offline=True),
  "mnist": DatasetSpec("mnist", (28, 28, 1), 10),
  "fashion_mnist": DatasetSpec("fashion_mnist", (28, 28, 1), 10),
  "cifar10": DatasetSpec("cifar10", (32, 32, 3), 10),
  "gaussian_ring8": _mixture_spec(gaussian_mixtures.RING8),
  "gaussian_grid25": _mixture_spec(gaussian_mixtures.GRID25),
  "simple_shapes": DatasetSpec(
    "simple_shapes",
    simple_shapes.IMAGE_SHAPE,
    simple_shapes.NUM_CLASSES,
    prepared_offline=True,
    support_check=shapes_parser.support_check,
    reconstruction_check=shapes_parser.reconstruction_check,
  ),
}


def get_dataset_spec(name: str) -> DatasetSpec:
  """Returns the spec of a project dataset name; UnknownNameError (a ValueError) listing the valid names."""
  try:
    return DATASETS[name]
  except KeyError:
    raise UnknownNameError(unknown_name_message("dataset", name, DATASETS)) from None
