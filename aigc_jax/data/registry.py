"""The datasets configs can name (`config.dataset`), and what the pipeline needs to know of each."""
import dataclasses

from aigc_jax.errors import UnknownNameError
from aigc_jax.registry import unknown_name_message


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How a project dataset name maps onto tfds.

  Attributes:
    tfds_name: name for `tfds.builder`, config included (`digits/28x28`).
    image_shape: (H, W, C) of one image as the pipeline yields it.
    num_classes: labels are ints in [0, num_classes).
    train_split: tfds split used for training.
    test_split: tfds split used for evaluation.
    prepared_offline: True when the builder needs no download and no TensorFlow
      (the pipeline prepares it on first use); catalog datasets must be prepared beforehand
      or downloaded, which needs the `catalog` extra (TensorFlow).
  """
  tfds_name: str
  image_shape: tuple[int, int, int]
  num_classes: int
  train_split: str = "train"
  test_split: str = "test"
  prepared_offline: bool = False


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec("digits/8x8", (8, 8, 1), 10, prepared_offline=True),
    "digits28": DatasetSpec("digits/28x28", (28, 28, 1), 10, prepared_offline=True),
    "mnist": DatasetSpec("mnist", (28, 28, 1), 10),
    "fashion_mnist": DatasetSpec("fashion_mnist", (28, 28, 1), 10),
    "cifar10": DatasetSpec("cifar10", (32, 32, 3), 10),
}


def get_dataset_spec(name: str) -> DatasetSpec:
  """Returns the spec of a project dataset name; UnknownNameError (a ValueError) listing the valid names."""
  try:
    return DATASETS[name]
  except KeyError:
    raise UnknownNameError(unknown_name_message("dataset", name, DATASETS)) from None
