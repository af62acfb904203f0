"""PNG grids of images, for training samples, reconstructions and evaluation figures."""
import math
import os

import numpy as np
from PIL import Image


def make_grid(images, num_columns: int = 0, padding: int = 1) -> np.ndarray:
  """Tiles `[N, H, W, C]` images in [0, 1] into one uint8 `[rows*(H+p)+p, cols*(W+p)+p, C]`.

  `num_columns=0` makes the grid as square as possible; the padding is white.
  """
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  num, height, width, channels = images.shape
  cols = num_columns or int(math.ceil(math.sqrt(num)))
  rows = int(math.ceil(num / cols))
  grid = np.ones((rows * (height + padding) + padding, cols * (width + padding) + padding,
                  channels), np.float32)
  for i, image in enumerate(images):
    top = padding + (i // cols) * (height + padding)
    left = padding + (i % cols) * (width + padding)
    grid[top:top + height, left:left + width] = image
  return np.round(grid * 255).astype(np.uint8)


def save_image_grid(path: str, images, num_columns: int = 0, upscale: int = 1) -> str:
  """Writes `make_grid(images)` to `path` as PNG, each pixel repeated `upscale` times."""
  grid = make_grid(images, num_columns)
  if upscale > 1:
    grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
  return path


def interleave_pairs(inputs, outputs) -> np.ndarray:
  """`[N, ...]`, `[N, ...]` -> `[2N, ...]` alternating input, output (columns of pairs)."""
  inputs, outputs = np.asarray(inputs), np.asarray(outputs)
  return np.stack([inputs, outputs], axis=1).reshape((-1,) + inputs.shape[1:])
