"""Why simple_shapes samples are invalid: planted sets of each reason are counted exactly."""

import numpy as np
import pytest

from aigc_jax.data import shapes_parser, simple_shapes
from aigc_jax.evaluation import shapes_invalid_kinds as kinds_lib

SIZE = simple_shapes.IMAGE_SIZE
TRIANGLE, SQUARE, PENTAGON = range(3)


def paste(image, type_index, row, col, value=1.0):
  """`image` [32, 32] with the template of the shape type drawn at image (row, col)."""
  out = image.copy()
  template = simple_shapes.TEMPLATES[simple_shapes.SHAPE_NAMES[type_index]]
  window = out[row : row + template.shape[0], col : col + template.shape[1]]
  window[template] = np.maximum(window[template], value)
  return out


def blank():
  return np.zeros((SIZE, SIZE))


def col_of(region, offset=0):
  return simple_shapes.REGION_COLUMNS[region][0] + offset


def real_images(num):
  """`num` images of the dataset's own drawing code (`render` of its drawn positions)."""
  positions = simple_shapes.draw_positions(4 * num, seed=7)
  positions = positions[(positions[:, :, 0] >= 0).any(axis=1)][:num]
  return simple_shapes.render(positions)[..., 0].astype(np.float64) / 255.0


def planted_sets():
  """{expected reasons (frozenset): [images]}, each image with exactly those reasons."""
  real = real_images(6)
  square_in_0 = paste(blank(), SQUARE, 3, col_of(0, 1))  # Another region's shape.
  pentagon_in_1 = paste(blank(), PENTAGON, 10, col_of(1, 0))
  two_squares = paste(paste(blank(), SQUARE, 2, col_of(1, 2)), SQUARE, 12, col_of(1, 3))
  two_triangles = paste(paste(blank(), TRIANGLE, 0, col_of(0)), TRIANGLE, 9, col_of(0, 1))
  triangle_and_square = paste(paste(blank(), TRIANGLE, 20, col_of(2)), SQUARE, 4, col_of(2, 2))
  # A triangle in the square's region whose base touches gutter 21: a blurred gutter pixel
  # next to it is part of that whole (wrong) shape, not stray; one far from it is stray.
  triangle_at_gutter = paste(blank(), TRIANGLE, 5, col_of(1, 1))
  triangle_at_gutter[12, simple_shapes.GUTTER_COLUMNS[1]] = 0.5
  triangle_and_far_stray = triangle_at_gutter.copy()
  triangle_and_far_stray[25, simple_shapes.GUTTER_COLUMNS[1]] = 0.5
  pentagon_in_0_at_gutter = paste(blank(), PENTAGON, 5, col_of(0, 1))
  pentagon_in_0_at_gutter[8, simple_shapes.GUTTER_COLUMNS[0]] = 0.5
  half_square = paste(blank(), SQUARE, 3, col_of(1, 1))
  half_square[3:6, col_of(1, 1) : col_of(1, 7)] = 0.0  # A fragment.
  faint = paste(blank(), PENTAGON, 3, col_of(2), value=0.4)  # A blend with the background.
  overlapping = paste(paste(blank(), SQUARE, 2, col_of(1, 2)), SQUARE, 5, col_of(1, 3))
  noise = paste(blank(), TRIANGLE, 1, col_of(0))
  noise[25:28, col_of(0, 2) : col_of(0, 5)] = 0.8  # A blob below the triangle.
  stroke = real[2].copy()
  stroke[5:11, simple_shapes.GUTTER_COLUMNS[0]] = 1.0
  two_squares_and_stroke = two_squares.copy()
  two_squares_and_stroke[25:30, simple_shapes.GUTTER_COLUMNS[0]] = 1.0
  square_in_0_and_fragment = square_in_0.copy()
  square_in_0_and_fragment[20:22, col_of(2, 3) : col_of(2, 5)] = 1.0
  return {
    frozenset(): list(real),
    frozenset({"wrong_shape"}): [
      square_in_0,
      pentagon_in_1,
      triangle_at_gutter,
      pentagon_in_0_at_gutter,
    ],
    frozenset({"wrong_shape", "stray"}): [triangle_and_far_stray],
    frozenset({"two_shapes"}): [two_squares, two_triangles, triangle_and_square],
    frozenset({"malformed"}): [half_square, faint, overlapping, noise],
    frozenset({"stray"}): [stroke],
    frozenset({"blank"}): [blank()],
    frozenset({"two_shapes", "stray"}): [two_squares_and_stroke],
    frozenset({"wrong_shape", "malformed"}): [square_in_0_and_fragment],
  }


def test_each_planted_image_has_exactly_its_reasons_and_kind():
  sets = planted_sets()
  images = np.stack([image for group in sets.values() for image in group])
  expected = [reasons for reasons, group in sets.items() for _ in group]
  found = kinds_lib.invalid_reasons(images[..., None])
  for n, reasons in enumerate(expected):
    got = {name for name, flags in found.reasons.items() if flags[n]}
    assert got == reasons, (n, got, reasons)
    assert found.valid[n] == (not reasons)
    kinds = {kinds_lib.KIND_OF_REASON[name] for name in reasons}
    kind = "mixed" if len(kinds) == 2 else (kinds.pop() if kinds else None)
    assert [k for k, flags in found.kinds.items() if flags[n]] == ([kind] if kind else [])
  # The parser agrees on validity (the reasons explain its verdict, they do not change it).
  np.testing.assert_array_equal(found.valid, shapes_parser.support_check(images[..., None]))


def test_counts_of_a_shuffled_planted_set_are_exact():
  sets = planted_sets()
  rng = np.random.default_rng(0)
  images, expected = [], []
  for reasons, group in sets.items():
    for image in group:
      copies = int(rng.integers(1, 4))
      images += [image] * copies
      expected += [reasons] * copies
  order = rng.permutation(len(images))
  images = np.stack(images)[order]
  expected = [expected[i] for i in order]
  counts = kinds_lib.invalid_reasons(images[..., None].astype(np.float32)).counts()
  kind_of = lambda r: {kinds_lib.KIND_OF_REASON[name] for name in r}
  assert counts["n"] == len(images)
  assert counts["invalid"] == sum(1 for r in expected if r)
  for name in kinds_lib.REASONS:
    assert counts[f"reason_{name}"] == sum(1 for r in expected if name in r)
  assert counts["mode_interpolation"] == sum(
    1 for r in expected if kind_of(r) == {"mode_interpolation"}
  )
  assert counts["rendering_artifact"] == sum(
    1 for r in expected if kind_of(r) == {"rendering_artifact"}
  )
  assert counts["mixed"] == sum(1 for r in expected if len(kind_of(r)) == 2)
  assert (
    counts["mode_interpolation"] + counts["rendering_artifact"] + counts["mixed"]
    == counts["invalid"]
  )


@pytest.mark.parametrize("sigma", [0.0, 0.7])
def test_real_images_have_no_reason(sigma):
  from scipy import ndimage

  images = (
    ndimage.gaussian_filter(real_images(200), (0, sigma, sigma)) if sigma else real_images(200)
  )
  counts = kinds_lib.invalid_reasons(images).counts()
  assert counts["invalid"] == 0 and all(counts[k] == 0 for k in kinds_lib.KINDS)
