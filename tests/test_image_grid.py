"""Image grids: 2-D points become one scatter picture, or a figure on labelled axes with the
true modes (the 2-D datasets' sample figures); a conditional model's rows carry their class."""

import numpy as np
import pytest
from PIL import Image

from aigc_jax import image_grid


def test_points_are_drawn_where_they_are():
  points = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [0.0, 0.0]])
  picture = image_grid.scatter_picture(points, size=11)
  # Axes span [-1.1, 1.1] over 11 cells of 0.2: x = 1 -> column 10, y = 1 -> row 0 (y is up).
  dark = {(int(r), int(c)) for r, c in zip(*np.nonzero(picture[..., 0] == 0.0))}
  assert dark == {(5, 10), (0, 5), (10, 0), (5, 5)}
  assert picture.shape == (11, 11, 1) and np.all(np.isin(picture, (0.0, 1.0)))
  grid = image_grid.make_grid(points)
  assert grid.shape == (130, 130, 1)  # One 128-pixel picture and its 1-pixel white border.
  assert np.array_equal(grid[1:-1, 1:-1], np.round(image_grid.scatter_picture(points) * 255))


def test_points_figure_has_framed_axes_with_ticks_and_red_modes():
  modes = np.array([[2.0, 0.0], [-2.0, 0.0]])
  points = np.array([[2.0, 0.0], [0.0, 1.0]])
  figure = image_grid.points_figure(points, radius=2.5, modes=modes, size=101)
  plain = image_grid.points_figure(points, radius=2.5, size=101)
  assert figure.shape == plain.shape and figure.shape[2] == 3
  black = np.all(figure == 0, axis=-1)
  frame_rows = np.nonzero(black.sum(axis=1) >= 101)[0]
  frame_columns = np.nonzero(black.sum(axis=0) >= 101)[0]
  assert len(frame_rows) == 2 and len(frame_columns) == 2  # Top/bottom and left/right sides.
  top, bottom = frame_rows
  left, right = frame_columns
  assert bottom - top == 102 and right - left == 102
  assert black[bottom + 2 :].any() and black[:, : left - 2].any()  # Tick values below and left.
  red = (figure[..., 0] > 200) & (figure[..., 1] < 50)
  red_rows, red_columns = np.nonzero(red)
  # Crosses around each mode: x = +-2 of [-2.5, 2.5] -> columns 10 and 90 of the plot.
  assert set(np.round(np.unique(red_columns - (left + 1)), -1).astype(int)) >= {10, 90}
  assert not ((plain[..., 0] > 200) & (plain[..., 1] < 50)).any()
  # The point (0, 1): column 50, row (2.5 - 1) / 5 * 100 = 30 of the plot, drawn dark grey.
  assert np.all(figure[top + 1 + 30, left + 1 + 50] == 60)


def test_labelled_rows_put_each_class_beside_its_row(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.random((3 * 4, 8, 8, 1)).astype(np.float32)
  path = image_grid.save_labelled_rows(
    str(tmp_path / "rows.png"), images, ["0", "1", "2"], upscale=2
  )
  picture = np.asarray(Image.open(path))
  grid = image_grid.make_grid(images, num_columns=4).repeat(2, axis=0).repeat(2, axis=1)
  strip = picture.shape[1] - grid.shape[1]
  assert strip > 0 and picture.shape[0] == grid.shape[0]
  np.testing.assert_array_equal(picture[:, strip:], grid[..., 0])
  row_height = 9 * 2
  for row in range(3):  # Text in the strip beside every row of images.
    band = picture[2 + row * row_height : 2 + row * row_height + 16, :strip]
    assert (band < 128).sum() > 3, row
  with pytest.raises(ValueError, match="do not make 5 equal rows"):
    image_grid.save_labelled_rows(str(tmp_path / "bad.png"), images, list("01234"))


def test_diverged_samples_are_left_out_of_the_points_figure():
  """An untrained diffusion chain can end at NaN or inf: the figure draws the finite points
  on the axes they alone set (before, the tick labels of an inf radius raised)."""
  points = np.array([[1.0, 0.5], [np.nan, 0.0], [np.inf, 2.0], [-1.0, -1.0]])
  assert image_grid.points_radius(points) == pytest.approx(1.1)
  figure = image_grid.points_figure(points)
  np.testing.assert_array_equal(figure, image_grid.points_figure(points[[0, 3]]))
