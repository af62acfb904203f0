"""PNG grids of images, for training samples, reconstructions and evaluation figures."""
import math
import os

from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def scatter_picture(points, size: int = 128, radius: Optional[float] = None) -> np.ndarray:
  """2-D points `[N, 2]` -> a `[size, size, 1]` picture in [0, 1]: a black pixel per point on
  white, x to the right and y up, the axes spanning [-r, r]; `radius` r defaults to
  1.1 * max |coordinate| (give it to draw several sets on the same axes)."""
  points = np.asarray(points, np.float64).reshape(-1, 2)
  if radius is None:
    radius = 1.1 * max(float(np.max(np.abs(points), initial=0.0)), 1e-6)
  cells = np.clip(np.floor((points + radius) / (2 * radius) * size), 0, size - 1).astype(int)
  picture = np.ones((size, size, 1), np.float32)
  picture[size - 1 - cells[:, 1], cells[:, 0], 0] = 0.0
  return picture


def make_grid(images, num_columns: int = 0, padding: int = 1) -> np.ndarray:
  """Tiles `[N, H, W, C]` images in [0, 1] into one uint8 `[rows*(H+p)+p, cols*(W+p)+p, C]`.

  `num_columns=0` makes the grid as square as possible; the padding is white. 2-D points
  `[N, 2]` make one scatter picture (`scatter_picture`) instead.
  """
  if np.ndim(images) == 2:
    images = scatter_picture(images)[None]
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


def _write_png(path: str, picture: np.ndarray, upscale: int) -> str:
  """uint8 `[H, W, C]` -> PNG at `path`, each pixel repeated `upscale` times."""
  if upscale > 1:
    picture = picture.repeat(upscale, axis=0).repeat(upscale, axis=1)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(path)
  return path


def save_image_grid(path: str, images, num_columns: int = 0, upscale: int = 1) -> str:
  """Writes `make_grid(images)` to `path` as PNG, each pixel repeated `upscale` times."""
  return _write_png(path, make_grid(images, num_columns), upscale)


def title_strip(text: str, width: int, channels: int) -> np.ndarray:
  """White uint8 `[h, width, channels]` with `text` in black, PIL's default font, wrapped at
  spaces to fit `width`."""
  font = ImageFont.load_default()
  measure = ImageDraw.Draw(Image.new("L", (1, 1)))
  lines, line = [], ""
  for word in text.split():
    candidate = f"{line} {word}".strip()
    if line and measure.textlength(candidate, font=font) > width - 4:
      lines.append(line)
      line = word
    else:
      line = candidate
  lines.append(line)
  top, bottom = font.getbbox("Ag")[1], font.getbbox("Ag")[3]
  line_height = bottom + 2
  strip = Image.new("L", (width, 4 + line_height * len(lines) - top), 255)
  draw = ImageDraw.Draw(strip)
  for index, text_line in enumerate(lines):
    draw.text((2, 2 - top + index * line_height), text_line, fill=0, font=font)
  return np.repeat(np.asarray(strip)[..., None], channels, axis=-1)


def save_side_by_side(path: str, image_sets, upscale: int = 1, gap: int = 4,
                      titles: Optional[Sequence[str]] = None) -> str:
  """Writes one PNG of several grids (one per `[N_i, H, W, C]` set) side by side.

  Each grid uses the same number of columns, so equal-size sets line up; a white gap of
  `gap` pixels (after upscaling) separates them. `titles`, one per set, are written above
  the grids in a white strip.
  """
  columns = int(math.ceil(math.sqrt(max(len(s) for s in image_sets))))
  grids = [make_grid(s, columns).repeat(upscale, axis=0).repeat(upscale, axis=1)
           for s in image_sets]
  if titles is not None:
    if len(titles) != len(grids):
      raise ValueError(f"{len(titles)} titles for {len(grids)} image sets")
    strips = [title_strip(t, g.shape[1], g.shape[2]) for t, g in zip(titles, grids)]
    strip_height = max(s.shape[0] for s in strips)
    grids = [np.concatenate([np.pad(s, ((0, strip_height - s.shape[0]), (0, 0), (0, 0)),
                                    constant_values=255), g])
             for s, g in zip(strips, grids)]
  height = max(g.shape[0] for g in grids)
  padded = [np.pad(g, ((0, height - g.shape[0]), (0, gap), (0, 0)), constant_values=255)
            for g in grids]
  return _write_png(path, np.concatenate(padded, axis=1)[:, :-gap], 1)


def interleave_pairs(inputs, outputs) -> np.ndarray:
  """`[N, ...]`, `[N, ...]` -> `[2N, ...]` alternating input, output (columns of pairs)."""
  inputs, outputs = np.asarray(inputs), np.asarray(outputs)
  return np.stack([inputs, outputs], axis=1).reshape((-1,) + inputs.shape[1:])
