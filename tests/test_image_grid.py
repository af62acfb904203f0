"""Image grids: 2-D points become one scatter picture (the 2-D datasets' sample figures)."""
import numpy as np

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
