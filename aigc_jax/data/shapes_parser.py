"""The exact parser of `simple_shapes` images: which content each region holds.

Given any image (real or generated, float in [0, 1]) it says, per region, whether the region
is EMPTY, holds its one allowed SHAPE, or holds something OTHER (a second shape, a shape of
another type, a fragment, a blend, noise), and whether anything lies outside every region.

The rules, with a tolerance of one pixel so that a slightly blurred or half-pixel-shifted
shape still counts, and three intensity levels:
  visible: x > 0.25;  drawn: x > 0.15;  inked: x > 0.5.

* A region is EMPTY when none of its pixels is visible.
* A region holds its SHAPE when, at some integer position that keeps the region's template
  (`simple_shapes.TEMPLATES`) inside the region, all three hold:
    1. every pixel of the template is drawn;
    2. every pixel of the template's core (the template eroded by its 4-neighbourhood) is
       inked, so a faint shape (a blend with the background) does not count;
    3. every visible pixel of the region lies within one pixel (8-neighbourhood) of the
       template, so nothing else is in the region.
  Its position is, among the positions that pass, the one with the largest sum of the image
  over the template (the least L1 distance to the clean shape).
* Otherwise the region holds OTHER.
* A visible pixel in a gutter (outside every region) is `stray` unless it lies within one
  pixel of a shape found in a neighbouring region (the blur of a shape that touches the
  gutter).
* An image is valid when no region holds OTHER, nothing is stray, and at least one region
  holds its shape (the dataset discards all-black images, so they are not in its support).

Why these catch each violation: a second shape or a fragment next to the shape breaks rule
3; a shape of another type breaks rule 1 or 3 (no two templates fit within one pixel of
each other at any offset); a partial shape breaks rule 1; a blend of two images holds
half-intensity shapes, which break rule 2 or, where they overlap, rule 3; noise breaks rule
3 or makes gutter pixels stray. Every real image passes exactly (binary pixels at the
template's own positions). Tolerance, measured on the 1,000 test images: after a Gaussian
blur of sigma up to 1.0 pixel, with or without a shift by a quarter or half pixel (linear
interpolation), or up to 1.2 without a shift, every image still passes (at sigma 1.5, 3% fail
unshifted and most fail shifted); two copies of one shape blended at an offset of 3 pixels or
more fail. Content at or below 0.25 counts as background.
"""

import dataclasses

import numpy as np

from aigc_jax.data import simple_shapes

VISIBLE = 0.25
DRAWN = 0.15
INKED = 0.5
EMPTY, SHAPE, OTHER = 0, 1, 2
STATUS_NAMES = ("empty", "shape", "other")

_NEIGHBOURS_4 = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def _core(template: np.ndarray) -> np.ndarray:
  """Template pixels whose four neighbours are all template pixels."""
  padded = np.pad(template, 1)
  height, width = template.shape
  core = np.ones_like(template)
  for dr, dc in _NEIGHBOURS_4:
    core &= padded[1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width]
  return core


def _dilated(template: np.ndarray) -> np.ndarray:
  """[h + 2, w + 2]: the template padded by one pixel, dilated by its 8-neighbourhood."""
  padded = np.pad(template, 2)
  height, width = template.shape[0] + 2, template.shape[1] + 2
  out = np.zeros((height, width), bool)
  for dr in (-1, 0, 1):
    for dc in (-1, 0, 1):
      out |= padded[1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width]
  return out


@dataclasses.dataclass(frozen=True)
class ShapesParse:
  """What `parse` found in N images.

  Attributes:
    status: [N, 3] int8, per region EMPTY (0), SHAPE (1) or OTHER (2).
    positions: [N, 3, 2] int32, (row, col) of the found shape's top-left template corner in
      the image; (-1, -1) where the status is not SHAPE.
    fits: [N, 3, 3] bool, fits[n, r, s]: region r of image n passes the SHAPE rules with the
      template of shape type s (a diagnosis: OTHER with fits[n, r, s], s != r, is a shape of
      the wrong type).
    stray: [N] bool, a visible pixel outside every region that no shape explains.
    valid: [N] bool, the image is in the dataset's support (see the module docstring).
  """

  status: np.ndarray
  positions: np.ndarray
  fits: np.ndarray
  stray: np.ndarray
  valid: np.ndarray


def _window_reduce(
  padded: np.ndarray, mask: np.ndarray, num_rows: int, num_cols: int, reduce
) -> np.ndarray:
  """reduce over the mask's pixels (a, b) of padded[i + a, j + b, :]: [num_rows, num_cols, N].

  Images are the last axis, so every operation runs over contiguous memory.
  """
  out = None
  for a, b in zip(*np.nonzero(mask)):
    window = padded[a : a + num_rows, b : b + num_cols]
    out = window.copy() if out is None else reduce(out, window, out=out)
  return out


def _match(region: np.ndarray, template: np.ndarray):
  """Tests the SHAPE rules at every position of `template` inside the region.

  Args:
    region: [H, W, N] float, one region of N images (images last).
    template: [h, w] bool.

  Returns:
    (fits [N] bool, row [N] int, col [N] int): the best passing position in region
    coordinates (0 where none passes).
  """
  height, width, num_images = region.shape
  rows, cols = height - template.shape[0] + 1, width - template.shape[1] + 1
  drawn = _window_reduce(region, template, rows, cols, np.minimum) > DRAWN
  inked = _window_reduce(region, _core(template), rows, cols, np.minimum) > INKED
  visible = (np.pad(region, ((1, 1), (1, 1), (0, 0))) > VISIBLE).astype(np.int32)
  covered = _window_reduce(visible, _dilated(template), rows, cols, np.add)
  uncovered = visible.sum(axis=(0, 1)) - covered
  passes = (drawn & inked & (uncovered == 0)).reshape(rows * cols, num_images)
  score = np.where(
    passes,
    _window_reduce(region, template, rows, cols, np.add).reshape(rows * cols, num_images),
    -np.inf,
  )
  best = np.argmax(score, axis=0)
  return passes.any(axis=0), best // cols, best % cols


def _as_images(images) -> np.ndarray:
  """[N, 32, 32] float64 in [0, 1] from [N, 32, 32(, 1)] floats in [0, 1] or uint8."""
  images = np.asarray(images)
  scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
  images = images.astype(np.float64) * scale
  if images.ndim == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  if images.shape[1:] != (simple_shapes.IMAGE_SIZE,) * 2:
    raise ValueError(
      f"simple_shapes images must be [N, 32, 32, 1] or [N, 32, 32], got shape {np.shape(images)}"
    )
  return images


def parse(images) -> ShapesParse:
  """Parses images region by region; see the module docstring for the rules.

  Args:
    images: [N, 32, 32, 1] or [N, 32, 32], float in [0, 1] (uint8 is scaled by 1/255).

  Returns:
    A `ShapesParse` of numpy arrays.
  """
  images = _as_images(images)
  num_images = len(images)
  names = simple_shapes.SHAPE_NAMES
  status = np.full((num_images, 3), OTHER, np.int8)
  positions = np.full((num_images, 3, 2), -1, np.int32)
  fits = np.zeros((num_images, 3, 3), bool)
  # Within one pixel of a found shape; padded by one pixel so that every halo fits.
  explained = np.zeros((num_images, images.shape[1] + 2, images.shape[2] + 2), bool)
  for r, (start, stop) in enumerate(simple_shapes.REGION_COLUMNS):
    region = np.ascontiguousarray(images[:, :, start:stop].transpose(1, 2, 0))
    matches = [_match(region, simple_shapes.TEMPLATES[name]) for name in names]
    fits[:, r] = np.stack([match[0] for match in matches], axis=1)
    _, row, col = matches[r]
    empty = ~(region > VISIBLE).any(axis=(0, 1))
    found = fits[:, r, r] & ~empty
    status[empty, r] = EMPTY
    status[found, r] = SHAPE
    positions[found, r] = np.stack([row, col + start], axis=1)[found]
    halo = _dilated(simple_shapes.TEMPLATES[names[r]])
    for n in np.flatnonzero(found):
      top, left = positions[n, r]  # The halo's corner, in padded coordinates.
      explained[n, top : top + halo.shape[0], left : left + halo.shape[1]] |= halo
  gutters = list(simple_shapes.GUTTER_COLUMNS)
  explained = explained[:, 1:-1, 1:-1]
  stray = ((images[:, :, gutters] > VISIBLE) & ~explained[:, :, gutters]).any(axis=(1, 2))
  valid = (status != OTHER).all(axis=1) & (status == SHAPE).any(axis=1) & ~stray
  return ShapesParse(status=status, positions=positions, fits=fits, stray=stray, valid=valid)


def support_check(images) -> np.ndarray:
  """`SupportCheck` of simple_shapes: [N, 32, 32, 1] float in [0, 1] -> [N] bool, True = valid.

  A generated image hallucinates when any region holds OTHER, something is stray, or it is
  all black.
  """
  return parse(images).valid


def reconstruction_check(inputs, reconstructions, position_tolerance: int = 1) -> np.ndarray:
  """[N] bool, True when a reconstruction keeps its input's parse.

  The reconstruction must be valid, hold a shape exactly in the regions where the input
  does, and each shape must be within `position_tolerance` pixels (in row and in column)
  of the input's. A reconstruction that hallucinates is one for which this is False.

  Args:
    inputs, reconstructions: [N, 32, 32, 1] float in [0, 1].
    position_tolerance: pixels a shape may move (blur can shift the best match by one).
  """
  before, after = parse(inputs), parse(reconstructions)
  same_status = (before.status == after.status).all(axis=1)
  moved = np.abs(before.positions - after.positions).max(axis=2) > position_tolerance
  same_positions = ~(moved & (before.status == SHAPE)).any(axis=1)
  return after.valid & same_status & same_positions
