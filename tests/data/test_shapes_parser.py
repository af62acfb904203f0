"""Tests of the exact simple_shapes parser: every real image valid, every planted violation caught."""

import numpy as np
import pytest
from scipy import ndimage

import aigc_jax.data as data
from aigc_jax.data import shapes_parser as sp
from aigc_jax.data import simple_shapes as ss

NAMES = ss.SHAPE_NAMES


@pytest.fixture(scope="module")
def real(known_support_data_dir):
  """Every real image: (images [N, 32, 32] float64 in {0, 1}, positions [N, 3, 2])."""
  images, positions = [], []
  for split, (_, split_positions) in ss.split_examples().items():
    split_images, _ = data.load_split_images("simple_shapes", split, known_support_data_dir)
    images.append(split_images[..., 0].astype(np.float64))
    positions.append(split_positions)
  return np.concatenate(images), np.concatenate(positions)


@pytest.fixture(scope="module")
def test_images(real):
  """The 1,000 test images and their positions (the planted violations start from these)."""
  images, positions = real
  return images[-1000:], positions[-1000:]


def paste(image, name, row, col, value=1.0):
  """image with the template of `name` drawn at (row, col) (max with what is there)."""
  out = image.copy()
  template = ss.TEMPLATES[name]
  window = out[row : row + template.shape[0], col : col + template.shape[1]]
  window[template] = np.maximum(window[template], value)
  return out


def clear_region(image, region):
  out = image.copy()
  start, stop = ss.REGION_COLUMNS[region]
  out[:, start:stop] = 0.0
  return out


def with_shapes(positions, region):
  return np.flatnonzero(positions[:, region, 0] >= 0)


def test_every_real_image_parses_valid_with_its_true_positions(real):
  images, positions = real
  assert len(images) == 6000  # Both splits.
  parse = sp.parse(images)
  assert parse.valid.all() and not parse.stray.any()
  present = positions[:, :, 0] >= 0
  np.testing.assert_array_equal(parse.status, np.where(present, sp.SHAPE, sp.EMPTY))
  np.testing.assert_array_equal(parse.positions, positions)
  # The tfds layout [N, 32, 32, 1], uint8 pixels and float pixels parse alike.
  uint8 = (images[:50, :, :, None] * 255).astype(np.uint8)
  np.testing.assert_array_equal(sp.parse(uint8).positions, positions[:50])
  np.testing.assert_array_equal(
    data.get_dataset_spec("simple_shapes").support_check(
      images[:50, :, :, None].astype(np.float32)
    ),
    np.ones(50, bool),
  )


@pytest.mark.parametrize("sigma, shift", [(0.7, 0.0), (1.2, 0.0), (1.0, 0.5), (1.0, 0.25)])
def test_blurred_or_half_pixel_shifted_real_images_stay_valid(test_images, sigma, shift):
  images, positions = test_images
  # Shapes touching a gutter are among them, so blur into the gutters is exercised.
  right_edge = positions[:, :, 1] + [ss.TEMPLATES[name].shape[1] - 1 for name in NAMES]
  touching = np.isin(right_edge, np.array(ss.GUTTER_COLUMNS) - 1) | np.isin(
    positions[:, :, 1], np.array(ss.GUTTER_COLUMNS) + 1
  )
  assert touching.any(axis=0).all()  # A shape touches a gutter in every region.
  moved = ndimage.shift(images, (0, shift, shift), order=1, mode="grid-constant")
  blurred = ndimage.gaussian_filter(moved, (0, sigma, sigma), mode="constant")
  parse = sp.parse(blurred)
  assert parse.valid.all()
  assert np.abs(parse.positions - positions).max() <= 1
  assert sp.reconstruction_check(images, blurred).all()


def test_a_second_shape_in_a_region_is_caught(test_images):
  images, positions = test_images
  planted, regions = [], []
  for region, name in enumerate(NAMES):
    height = ss.TEMPLATES[name].shape[0]
    for n in with_shapes(positions, region)[:60]:
      row, col = positions[n, region]
      for new_row in (row + height + 1, row - height - 1, row + 3, row - 3):  # Apart, overlapping.
        if 0 <= new_row <= 32 - height:
          planted.append(paste(images[n], name, new_row, col))
          regions.append(region)
  parse = sp.parse(np.stack(planted))
  assert len(planted) > 300 and not parse.valid.any()
  np.testing.assert_array_equal(parse.status[np.arange(len(planted)), regions], sp.OTHER)


def test_a_shape_of_another_type_is_caught_at_every_position(test_images):
  images, _ = test_images
  planted, expected = [], []
  for region in range(3):
    base = clear_region(images[0], region)
    start, stop = ss.REGION_COLUMNS[region]
    for other, name in enumerate(NAMES):
      if other == region:
        continue
      height, width = ss.TEMPLATES[name].shape
      for row in range(32 - height + 1):
        for col in range(start, stop - width + 1):
          planted.append(paste(base, name, row, col))
          expected.append((region, other))
  parse = sp.parse(np.stack(planted))
  assert len(planted) == 466 and not parse.valid.any()  # Every placement of both others.
  regions, others = np.array(expected).T
  index = np.arange(len(planted))
  np.testing.assert_array_equal(parse.status[index, regions], sp.OTHER)
  assert parse.fits[index, regions, others].all()  # Diagnosed: that other shape is there.


def test_fragments_are_caught(test_images):
  images, positions = test_images
  planted = []
  for region, name in enumerate(NAMES):
    height, width = ss.TEMPLATES[name].shape
    for n in with_shapes(positions, region)[:40]:
      row, col = positions[n, region]
      cut = images[n].copy()
      cut[row + height // 2 : row + height, col : col + width] = 0.0  # Bottom half missing.
      planted.append(cut)
      cut = images[n].copy()
      cut[row : row + height, col + width // 2 + 1 : col + width] = 0.0  # Right part missing.
      planted.append(cut)
      speck = images[n].copy()  # A 2x2 speck three rows below or above the shape.
      speck_row = row + height + 2 if row + height + 4 <= 32 else row - 4
      speck[speck_row : speck_row + 2, col : col + 2] = 1.0
      planted.append(speck)
    for n in np.flatnonzero(positions[:, region, 0] < 0)[:20]:  # A speck alone.
      speck = images[n].copy()
      start = ss.REGION_COLUMNS[region][0]
      speck[15:17, start + 4 : start + 6] = 1.0
      planted.append(speck)
  assert not sp.parse(np.stack(planted)).valid.any()


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.7])
def test_blends_of_two_images_are_caught(test_images, alpha):
  images, positions = test_images
  planted = []
  for region, name in enumerate(NAMES):
    height = ss.TEMPLATES[name].shape[0]
    for n in with_shapes(positions, region)[:40]:
      row, col = positions[n, region]
      for new_row in (row + 3, row - 3, row + height + 2):
        if 0 <= new_row <= 32 - height:
          other = paste(clear_region(images[n], region), name, new_row, col)
          planted.append(alpha * images[n] + (1 - alpha) * other)  # Shape moved: two ghosts.
      if alpha <= 0.5:  # Blended with the region empty: a faint shape, at most half inked.
        planted.append(alpha * images[n] + (1 - alpha) * clear_region(images[n], region))
  planted = np.stack(planted)
  assert not sp.parse(planted).valid.any()


def test_no_two_shapes_blend_into_a_valid_one():
  """Every mean of two templates in a region, at every pair of positions inside it, is
  rejected; for two copies of one shape from an offset of three pixels on (closer copies look
  like one blurred shape). Their binary union is rejected too, except where the second shape
  lies within one pixel of the first (then the union is the first shape, within tolerance)."""
  planted, union, hidden = [], [], []
  for region, first in enumerate(NAMES):
    start, stop = ss.REGION_COLUMNS[region]
    for first_col in range(start, stop - ss.TEMPLATES[first].shape[1] + 1):
      base = paste(np.zeros((32, 32)), first, 12, first_col)
      halo = ndimage.binary_dilation(base > 0, np.ones((3, 3), bool))
      for second in NAMES:
        second_height, second_width = ss.TEMPLATES[second].shape
        for row in range(32 - second_height + 1):
          for col in range(start, stop - second_width + 1):
            if second == first and max(abs(row - 12), abs(col - first_col)) < 3:
              continue
            other = paste(np.zeros((32, 32)), second, row, col)
            planted.append((base + other) / 2)
            union.append(np.maximum(base, other))
            hidden.append(not (other > halo).any())
  assert len(planted) > 1900
  assert not sp.parse(np.stack(planted)).valid.any()
  union_valid = sp.parse(np.stack(union)).valid
  np.testing.assert_array_equal(union_valid, hidden)  # Valid exactly when hidden in the halo.
  assert 0 < np.sum(hidden) < 0.05 * len(hidden)


def test_stray_pixels_outside_the_regions_are_caught(test_images):
  images, _ = test_images
  planted = []
  for image in images[:200]:
    for gutter in ss.GUTTER_COLUMNS:
      # A gutter pixel with no shape pixel within two pixels of it: nothing explains it.
      near = ndimage.binary_dilation(image > 0, np.ones((5, 5), bool))[:, gutter]
      rows = np.flatnonzero(~near)
      if len(rows):
        stray = image.copy()
        stray[rows[len(rows) // 2], gutter] = 1.0
        planted.append(stray)
  parse = sp.parse(np.stack(planted))
  assert len(planted) > 300 and parse.stray.all() and not parse.valid.any()
  assert (parse.status != sp.OTHER).all()  # The regions themselves are fine.


def test_noise_and_blank_images_are_caught(test_images):
  images, _ = test_images
  rng = np.random.default_rng(0)
  noisy = np.clip(images[:200] + rng.normal(0, 0.3, images[:200].shape), 0, 1)
  uniform = rng.uniform(0, 1, (50, 32, 32))
  blank = np.stack([np.zeros((32, 32)), np.ones((32, 32)), np.full((32, 32), 0.5)])
  assert not sp.parse(np.concatenate([noisy, uniform, blank])).valid.any()
  faint = np.clip(images[:200] + rng.normal(0, 0.03, images[:200].shape), 0, 1)
  assert sp.parse(faint).valid.all()  # Noise below the visible level is background.


def test_reconstruction_check_compares_parses(test_images):
  images, positions = test_images
  n = with_shapes(positions, 1)[:50]  # Images with a square.
  row, col = positions[n, 1].T
  keep = sp.reconstruction_check(images[n], images[n])
  by_one, by_two, removed, added = [], [], [], []
  for i, (r, c) in zip(n, zip(row, col)):
    base = clear_region(images[i], 1)
    by_one.append(paste(base, "square", r + 1 if r < 26 else r - 1, c))
    by_two.append(paste(base, "square", r + 2 if r < 25 else r - 2, c))
    removed.append(base)
    empty_regions = [k for k in (0, 2) if positions[i, k, 0] < 0]
    if empty_regions:
      k = empty_regions[0]
      added.append(paste(images[i], NAMES[k], 5, ss.REGION_COLUMNS[k][0]))
  assert keep.all()
  assert sp.reconstruction_check(images[n], np.stack(by_one)).all()  # Within tolerance.
  assert not sp.reconstruction_check(images[n], np.stack(by_two)).any()
  assert not sp.reconstruction_check(images[n], np.stack(removed)).any()
  added_inputs = images[[i for i in n if (positions[i, [0, 2], 0] < 0).any()]]
  assert len(added) == len(added_inputs) > 10
  assert sp.parse(np.stack(added)).valid.all()  # A valid image, but not the input's content.
  assert not sp.reconstruction_check(added_inputs, np.stack(added)).any()


def test_bad_image_shape_is_one_clear_error():
  with pytest.raises(ValueError, match=r"\[N, 32, 32, 1\]") as info:
    sp.parse(np.zeros((2, 28, 28, 1)))
  assert "\n" not in str(info.value)
