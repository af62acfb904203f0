"""Simple Shapes: 32x32 binary images whose support is known exactly, as a tfds builder.

In the spirit of the Simple Shapes set of Aithal, Maini, Lipton & Kolter (NeurIPS 2024,
arXiv 2406.09358; locuslab/diffusion-model-hallucination, `shapes/gen_simple_shapes_dataset
.py`), scaled from 64x64 to 32x32:

* The image is cut into three vertical strips (regions) of 10 columns by 32 rows, at columns
  0-9, 11-20 and 22-31; the gutter columns 10 and 21 belong to no region.
* Strip 0 may hold only a triangle, strip 1 only a square, strip 2 only a pentagon; each is
  present independently with probability 0.5, at a uniformly random integer position with
  the whole shape inside its strip. All-black images are discarded.
* Shapes are fixed binary masks (`TEMPLATES`, drawn below): pixels are exactly 0 or 255, so
  the parser (`shapes_parser`) can be exact on every real image.

Deviations from the paper, and why: 32x32 instead of 64x64 (CPU runs stay short); 1-pixel
gutters between the strips (shapes in neighbouring strips never touch, so a blurred shape
does not bleed into the next strip); the shapes are as large as a 10-column strip allows,
and not of equal area (triangle 40 px, square 36 px, pentagon 53 px), because at this size
equal-area shapes differ by less than a pixel along their outlines and could not be told
apart after a slight blur: these three cannot be confused by the parser with a tolerance of
one pixel (tested on every pair of shapes, blends included).

Features: image [32, 32, 1] uint8 in {0, 255}; label: ClassLabel(7), the presence pattern
(triangle + 2 square + 4 pentagon) minus 1, so a classifier can serve as the class oracle;
positions [3, 2] int32, the (row, col) of each shape's top-left template corner in the image,
(-1, -1) where absent; index: the draw the image came from.

Splits: draws from PCG64 (raw 64-bit words, a stream numpy keeps stable) with a fixed seed;
the first 5,000 non-empty images are `train`, the next 1,000 `test` (an image may occur in
both: there are 339,863 possible images and draws are independent).
"""

from typing import Dict, List, Tuple

import numpy as np
import tensorflow_datasets as tfds

IMAGE_SIZE = 32
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
SHAPE_NAMES = ("triangle", "square", "pentagon")  # Region k holds only SHAPE_NAMES[k].
REGION_WIDTH = 10
REGION_COLUMNS = tuple((11 * k, 11 * k + REGION_WIDTH) for k in range(3))  # [start, stop).
GUTTER_COLUMNS = (10, 21)  # Outside every region.
PRESENCE_PROBABILITY = 0.5
NUM_CLASSES = 7  # Non-empty presence patterns.
SPLIT_SIZES = {"train": 5_000, "test": 1_000}
SEED = 2406_09358  # The paper's arXiv number.
_NUM_DRAWS = 8_000  # As in the paper's script; about 7,000 are non-empty.


def _mask(art: str) -> np.ndarray:
  return np.array([[c == "#" for c in row] for row in art.split()], bool)


TEMPLATES: Dict[str, np.ndarray] = {
  # Apex up, base 9, height 8: 40 pixels.
  "triangle": _mask("""
        ....#....
        ...###...
        ...###...
        ..#####..
        ..#####..
        .#######.
        .#######.
        #########
    """),
  "square": np.ones((6, 6), bool),  # 36 pixels.
  # A regular pentagon, apex up, circumradius 4.6, sampled at pixel centres: 53 pixels.
  "pentagon": _mask("""
        ....#....
        ...###...
        ..#####..
        #########
        #########
        .#######.
        .#######.
        .#######.
        ..#####..
    """),
}


def placements(region: int) -> np.ndarray:
  """[P, 2] int: every (row, col) top-left image position of the region's shape that keeps the
  whole shape inside the region, in row-major order."""
  height, width = TEMPLATES[SHAPE_NAMES[region]].shape
  start, stop = REGION_COLUMNS[region]
  rows, cols = np.meshgrid(
    np.arange(IMAGE_SIZE - height + 1), np.arange(start, stop - width + 1), indexing="ij"
  )
  return np.stack([rows.ravel(), cols.ravel()], axis=1)


def label_of(present: np.ndarray) -> np.ndarray:
  """Class id of presence patterns: [..., 3] bool -> [...] int32 in [0, 7); all-False -> -1."""
  present = np.asarray(present, bool)
  return (present[..., 0] + 2 * present[..., 1] + 4 * present[..., 2] - 1).astype(np.int32)


def class_names() -> List[str]:
  """Names of the 7 classes, e.g. 'triangle+pentagon'."""
  return [
    "+".join(n for k, n in enumerate(SHAPE_NAMES) if (c + 1) >> k & 1) for c in range(NUM_CLASSES)
  ]


def render(positions: np.ndarray) -> np.ndarray:
  """Binary images from shape positions.

  Args:
    positions: [N, 3, 2] int, (row, col) of each region's shape; a negative row = absent.

  Returns:
    [N, 32, 32, 1] uint8 in {0, 255}.
  """
  positions = np.asarray(positions)
  images = np.zeros((len(positions), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
  for region, name in enumerate(SHAPE_NAMES):
    height, width = TEMPLATES[name].shape
    for image, (row, col) in zip(images, positions[:, region]):
      if row >= 0:
        image[row : row + height, col : col + width][TEMPLATES[name]] = 255
  return images[..., None]


def draw_positions(num_draws: int, seed: int) -> np.ndarray:
  """[num_draws, 3, 2] int32 shape positions ((-1, -1) = absent), all-empty draws included.

  Each region uses two raw PCG64 words per draw: one for presence (top 53 bits as a uniform
  u, present when u < 0.5), one for the position (index floor(u * P) into `placements`).
  """
  words = np.random.PCG64(seed).random_raw(num_draws * 6).reshape(num_draws, 3, 2)
  uniforms = (words >> np.uint64(11)).astype(np.float64) * 2.0**-53  # In [0, 1), exact.
  positions = np.full((num_draws, 3, 2), -1, np.int32)
  for region in range(3):
    options = placements(region)
    present = uniforms[:, region, 0] < PRESENCE_PROBABILITY
    index = np.minimum(
      np.floor(uniforms[:, region, 1] * len(options)).astype(np.int64), len(options) - 1
    )
    positions[present, region] = options[index[present]]
  return positions


def split_examples() -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """{split: (draw indices [n] int, positions [n, 3, 2] int32)} of the stored splits."""
  positions = draw_positions(_NUM_DRAWS, SEED)
  nonempty = np.flatnonzero((positions[:, :, 0] >= 0).any(axis=1))
  needed = sum(SPLIT_SIZES.values())
  if len(nonempty) < needed:
    raise AssertionError(f"{len(nonempty)} non-empty draws, fewer than {needed}.")
  out, start = {}, 0
  for split, size in SPLIT_SIZES.items():
    draws = nonempty[start : start + size]
    out[split] = (draws, positions[draws])
    start += size
  return out


class SimpleShapes(tfds.core.GeneratorBasedBuilder):
  """Three strips, one shape type each; see the module docstring."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: 32x32, 5,000 train / 1,000 test."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
          "label": tfds.features.ClassLabel(names=class_names()),
          "positions": tfds.features.Tensor(shape=(3, 2), dtype=np.int32),
          "index": tfds.features.Scalar(dtype=np.int32),
        }
      ),
      supervised_keys=("image", "label"),
      disable_shuffling=True,  # Written in generation order (draws are i.i.d.).
      homepage="https://github.com/locuslab/diffusion-model-hallucination",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Generated: nothing to download.
    return {
      split: self._generate_examples(draws, positions)
      for split, (draws, positions) in split_examples().items()
    }

  def _generate_examples(self, draws, positions):
    images = render(positions)
    labels = label_of(positions[:, :, 0] >= 0)
    for draw, image, label, position in zip(draws, images, labels, positions):
      yield (
        int(draw),
        {"image": image, "label": int(label), "positions": position, "index": int(draw)},
      )


def split_arrays(split: str) -> Tuple[np.ndarray, np.ndarray]:
  """A stored split computed directly: (images [N, 32, 32, 1] uint8, labels [N] int32), the
  same arrays the tfds builder writes, in its order."""
  _, positions = split_examples()[split]
  return render(positions), label_of(positions[:, :, 0] >= 0)
