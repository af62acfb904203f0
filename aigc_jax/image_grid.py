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
  grid = np.ones(
    (rows * (height + padding) + padding, cols * (width + padding) + padding, channels), np.float32
  )
  for i, image in enumerate(images):
    top = padding + (i // cols) * (height + padding)
    left = padding + (i % cols) * (width + padding)
    grid[top : top + height, left : left + width] = image
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


def save_side_by_side(
  path: str, image_sets, upscale: int = 1, gap: int = 4, titles: Optional[Sequence[str]] = None
) -> str:
  """Writes one PNG of several grids (one per `[N_i, H, W, C]` set) side by side.

  Each grid uses the same number of columns, so equal-size sets line up; a white gap of
  `gap` pixels (after upscaling) separates them. `titles`, one per set, are written above
  the grids in a white strip.
  """
  columns = int(math.ceil(math.sqrt(max(len(s) for s in image_sets))))
  grids = [
    make_grid(s, columns).repeat(upscale, axis=0).repeat(upscale, axis=1) for s in image_sets
  ]
  if titles is not None:
    if len(titles) != len(grids):
      raise ValueError(f"{len(titles)} titles for {len(grids)} image sets")
    strips = [title_strip(t, g.shape[1], g.shape[2]) for t, g in zip(titles, grids)]
    strip_height = max(s.shape[0] for s in strips)
    grids = [
      np.concatenate(
        [np.pad(s, ((0, strip_height - s.shape[0]), (0, 0), (0, 0)), constant_values=255), g]
      )
      for s, g in zip(strips, grids)
    ]
  height = max(g.shape[0] for g in grids)
  padded = [
    np.pad(g, ((0, height - g.shape[0]), (0, gap), (0, 0)), constant_values=255) for g in grids
  ]
  return _write_png(path, np.concatenate(padded, axis=1)[:, :-gap], 1)


def interleave_pairs(inputs, outputs) -> np.ndarray:
  """`[N, ...]`, `[N, ...]` -> `[2N, ...]` alternating input, output (columns of pairs)."""
  inputs, outputs = np.asarray(inputs), np.asarray(outputs)
  return np.stack([inputs, outputs], axis=1).reshape((-1,) + inputs.shape[1:])


def _tick_text(value: float) -> str:
  return f"{value:.3g}" if value else "0"


# How the point figures draw samples and a mixture's true modes (PIL and matplotlib alike).
POINT_GREY = 60  # Of 255: the samples.
MODE_RED = (220, 0, 0)  # The true modes' crosses.


def points_radius(points, modes=None) -> float:
  """Half the side of square axes centred at 0 that hold every point and mode: 1.1 * the
  largest finite |coordinate| of either (a diverged sample, NaN or inf, is not drawn)."""
  points = np.asarray(points, np.float64).reshape(-1, 2)
  points = points[np.isfinite(points).all(axis=1)]
  extent = [np.max(np.abs(points), initial=0.0)]
  if modes is not None:
    extent.append(np.max(np.abs(np.asarray(modes, np.float64)), initial=0.0))
  return 1.1 * max(float(max(extent)), 1e-6)


def points_ticks(radius: float) -> list:
  """The tick positions of axes spanning [-radius, radius]: ends, halves and 0."""
  return [-radius, -radius / 2, 0.0, radius / 2, radius]


def _open_cross():
  """A matplotlib marker: a cross with an open centre, as `points_figure` draws the modes (the
  samples around a mode stay visible)."""
  # Imported here: training imports this module for its PIL figures and need not load
  # matplotlib.
  from matplotlib.path import Path  # pylint: disable=import-outside-toplevel

  arms = [((-1, 0), (-0.35, 0)), ((0.35, 0), (1, 0)), ((0, -1), (0, -0.35)), ((0, 0.35), (0, 1))]
  return Path([p for arm in arms for p in arm], [Path.MOVETO, Path.LINETO] * len(arms))


def draw_points_on_axes(axes, points, radius: float, modes=None) -> None:
  """Draws 2-D points `[N, 2]` on matplotlib `axes` as `points_figure` draws them: square
  axes spanning [-radius, radius] with ticks at `points_ticks`, the points as small dark grey
  dots labelled "samples" and, if given, `modes` `[K, 2]` as red crosses labelled "true
  modes" (for a legend)."""
  points = np.asarray(points, np.float64).reshape(-1, 2)
  grey = (POINT_GREY / 255,) * 3
  axes.scatter(points[:, 0], points[:, 1], s=4, color=grey, linewidths=0, label="samples")
  if modes is not None:
    modes = np.asarray(modes, np.float64).reshape(-1, 2)
    axes.plot(
      modes[:, 0],
      modes[:, 1],
      linestyle="none",
      marker=_open_cross(),
      markersize=14,
      markeredgewidth=1.5,
      color=tuple(c / 255 for c in MODE_RED),
      label=f"true modes ({len(modes)})",
    )
  axes.set_xlim(-radius, radius)
  axes.set_ylim(-radius, radius)
  axes.set_aspect("equal")
  ticks = points_ticks(radius)
  axes.set_xticks(ticks, [_tick_text(t) for t in ticks])
  axes.set_yticks(ticks, [_tick_text(t) for t in ticks])
  axes.tick_params(labelsize=8)


def points_figure(
  points, radius: Optional[float] = None, modes=None, size: int = 256, title: Optional[str] = None
) -> np.ndarray:
  """2-D points `[N, 2]` on labelled axes -> uint8 RGB `[H, W, 3]`.

  A framed square plot of `size` pixels spanning [-r, r] on both axes (x to the right, y up;
  `radius` r defaults to 1.1 * max |coordinate|), ticks and their values at -r, -r/2, 0, r/2
  and r, the points in dark grey and, if given, `modes` `[K, 2]` (a mixture's true means) as
  red crosses. `title` goes in a strip above.
  """
  points = np.asarray(points, np.float64).reshape(-1, 2)
  if radius is None:
    radius = points_radius(points, modes)
  font = ImageFont.load_default()
  ticks = points_ticks(radius)
  labels = [_tick_text(t) for t in ticks]
  measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  text_height = font.getbbox("0")[3]
  left = int(max(measure.textlength(t, font=font) for t in labels)) + 8
  right, top, bottom = 12, 8, text_height + 10
  image = Image.new("RGB", (left + size + right, top + size + bottom), (255, 255, 255))
  draw = ImageDraw.Draw(image)

  def pixel(x, y):  # Data coordinates -> pixel centre inside the frame.
    column = left + (np.asarray(x) + radius) / (2 * radius) * (size - 1)
    row = top + (radius - np.asarray(y)) / (2 * radius) * (size - 1)
    return column, row

  draw.rectangle([left - 1, top - 1, left + size, top + size], outline=(0, 0, 0))
  for tick, label in zip(ticks, labels):
    column, row = pixel(tick, tick)
    draw.line([column, top + size, column, top + size + 3], fill=(0, 0, 0))
    draw.line([left - 4, row, left - 1, row], fill=(0, 0, 0))
    width = measure.textlength(label, font=font)
    draw.text((column - width / 2, top + size + 5), label, fill=(0, 0, 0), font=font)
    draw.text((left - 6 - width, row - text_height / 2 - 1), label, fill=(0, 0, 0), font=font)
  picture = np.asarray(image).copy()
  columns, rows = pixel(points[:, 0], points[:, 1])
  inside = np.all(np.abs(points) <= radius, axis=1)
  picture[np.round(rows[inside]).astype(int), np.round(columns[inside]).astype(int)] = POINT_GREY
  if modes is not None:
    draw = ImageDraw.Draw(image := Image.fromarray(picture))
    for column, row in zip(*pixel(*np.asarray(modes, np.float64).reshape(-1, 2).T)):
      draw.line([column - 6, row, column - 2, row], fill=MODE_RED)  # A cross with an open
      draw.line([column + 2, row, column + 6, row], fill=MODE_RED)  # centre: the samples
      draw.line([column, row - 6, column, row - 2], fill=MODE_RED)  # around the mode stay
      draw.line([column, row + 2, column, row + 6], fill=MODE_RED)  # visible.
    picture = np.asarray(image)
  if title:
    picture = np.concatenate([title_strip(title, picture.shape[1], 3), picture])
  return picture


def save_points_figure(
  path: str, points, radius: Optional[float] = None, modes=None, title: Optional[str] = None
) -> str:
  """Writes `points_figure(...)` to `path` as PNG."""
  return _write_png(path, points_figure(points, radius, modes, title=title), 1)


def save_labelled_rows(
  path: str, images, row_labels: Sequence[str], upscale: int = 1, title: Optional[str] = None
) -> str:
  """Writes `[R * C, H, W, ch]` images as a grid of R rows of C, each row's label on its left.

  For the samples of a conditional model: row r holds the samples asked for class
  `row_labels[r]`. `title` goes in a strip above.
  """
  images = np.asarray(images)
  num_rows = len(row_labels)
  if num_rows == 0 or len(images) % num_rows:
    raise ValueError(f"{len(images)} images do not make {num_rows} equal rows")
  grid = make_grid(images, num_columns=len(images) // num_rows)
  grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
  font = ImageFont.load_default()
  measure = ImageDraw.Draw(Image.new("L", (1, 1)))
  width = int(max(measure.textlength(str(l), font=font) for l in row_labels)) + 8
  strip = Image.new("L", (width, grid.shape[0]), 255)
  draw = ImageDraw.Draw(strip)
  row_height = (images.shape[1] + 1) * upscale  # One image and its padding.
  text_height = font.getbbox("0")[3]
  for index, label in enumerate(row_labels):
    centre = upscale + index * row_height + images.shape[1] * upscale / 2
    draw.text(
      (width - 4 - measure.textlength(str(label), font=font), centre - text_height / 2 - 1),
      str(label),
      fill=0,
      font=font,
    )
  labels = np.repeat(np.asarray(strip)[..., None], grid.shape[-1], axis=-1)
  picture = np.concatenate([labels, grid], axis=1)
  if title:
    picture = np.concatenate([title_strip(title, picture.shape[1], picture.shape[-1]), picture])
  return _write_png(path, picture, 1)
