"""The sample figures the loop writes: 2-D points on labelled axes with the true modes, a
conditional model's samples one row per class asked for (the rows used to be unlabelled and
to mix classes, `arange(n) % K` over a square grid)."""

import types

import numpy as np
from PIL import Image

from aigc_jax import data
from aigc_jax.image_grid import points_figure, save_labelled_rows
from aigc_jax.training import writers


def _family(generate, conditional=False):
  return types.SimpleNamespace(generate=generate, reconstruct=None, conditional=conditional)


def test_conditional_samples_make_one_labelled_row_per_class(tmp_path):
  asked = []

  def generate(state, key, num, labels=None):
    asked.append(np.asarray(labels))
    return np.broadcast_to(np.asarray(labels, np.float32)[:, None, None, None] / 9, (num, 8, 8, 1))

  spec = data.get_dataset_spec("digits")
  (path,) = writers.write_image_grids(
    _family(generate, conditional=True), None, None, None, str(tmp_path), 7, 64, spec
  )
  (labels,) = asked
  np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 6))  # Row k: class k.
  samples = generate(None, None, len(labels), labels)
  expected = save_labelled_rows(
    str(tmp_path / "expected.png"),
    samples,
    [str(k) for k in range(10)],
    upscale=2,
    title="row: class asked for",
  )
  np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(expected)))
  assert path.endswith("samples_00000007.png")


def test_point_samples_are_drawn_on_axes_with_the_true_modes(tmp_path):
  spec = data.get_dataset_spec("gaussian_ring8")
  points = np.asarray(spec.mixture.means, np.float32)[np.arange(40) % 8]
  (path,) = writers.write_image_grids(
    _family(lambda state, key, num: points[:num]), None, None, None, str(tmp_path), 3, 40, spec
  )
  expected = points_figure(
    points, modes=spec.mixture.means, title="40 samples at step 3; red crosses: the 8 true modes"
  )
  np.testing.assert_array_equal(np.asarray(Image.open(path)), expected)
  assert ((expected[..., 0] > 200) & (expected[..., 1] < 50)).any()  # The modes are drawn.
