"""DiffAugment against a numpy transliteration of the authors' reference code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.errors import UnknownNameError
from aigc_jax.training import diff_augment as da
from aigc_jax.training import noise

HEIGHT, WIDTH = 16, 6  # Not square, and other shift ranges: a swapped axis shows.


def translate_reference(image, row_shift, col_shift):
  """DiffAugment_pytorch.rand_translation for one HWC image: pad 1, clamped gather."""
  height, width = image.shape[:2]
  padded = np.pad(image, ((1, 1), (1, 1), (0, 0)))
  rows = np.clip(np.arange(height) + row_shift + 1, 0, height + 1)
  cols = np.clip(np.arange(width) + col_shift + 1, 0, width + 1)
  return padded[rows[:, None], cols[None, :]]


def _reference_cutout(image, row_offset, col_offset):
  """DiffAugment_pytorch.rand_cutout for one HWC image: zero a clamped index grid."""
  size = (int(HEIGHT * 0.5 + 0.5), int(WIDTH * 0.5 + 0.5))
  grid_r = np.clip(np.arange(size[0]) + row_offset - size[0] // 2, 0, HEIGHT - 1)
  grid_c = np.clip(np.arange(size[1]) + col_offset - size[1] // 2, 0, WIDTH - 1)
  mask = np.ones((HEIGHT, WIDTH))
  mask[grid_r[:, None], grid_c[None, :]] = 0
  return image * mask[..., None]


def _image(seed=0, channels=3):
  return np.random.RandomState(seed).uniform(-1, 1, (HEIGHT, WIDTH, channels)).astype(np.float32)


def test_translation_and_cutout_match_the_reference_for_every_draw():
  image = _image()
  max_row, max_col = int(HEIGHT * 0.125 + 0.5), int(WIDTH * 0.125 + 0.5)
  for row in range(-max_row, max_row + 1):
    for col in range(-max_col, max_col + 1):
      np.testing.assert_array_equal(
        da.translate(image, row, col), translate_reference(image, row, col)
      )
  for row in range(HEIGHT + 1):  # Even sizes: offsets in [0, side]; odd: [0, side).
    for col in range(WIDTH + 1 - int(WIDTH * 0.5 + 0.5) % 2):
      np.testing.assert_array_equal(da.cut_out(image, row, col), _reference_cutout(image, row, col))


def _which(candidates, output):
  """The one key of `candidates` (draw -> transformed image) that equals `output`."""
  found = [draw for draw, image in candidates.items() if np.array_equal(image, output)]
  assert len(found) == 1, found
  return found[0]


def test_draws_cover_the_reference_ranges():
  image = _image(channels=1)
  # Shifts uniform in [-r, r], r = int(0.125 * side + 0.5): 2 rows, 1 column.
  shifts = {(r, c): translate_reference(image, r, c) for r in range(-2, 3) for c in (-1, 0, 1)}
  drawn = {
    _which(shifts, np.asarray(da.translation(image, jax.random.PRNGKey(i)))) for i in range(300)
  }
  assert drawn == set(shifts)
  # Cutout centres: size 8 (even) rows -> [0, 16]; size 3 (odd) columns -> [0, 6).
  drawn = {
    tuple(int(v) for v in da.cutout_offset(jax.random.PRNGKey(i), HEIGHT, WIDTH))
    for i in range(600)
  }
  assert drawn == {(r, c) for r in range(HEIGHT + 1) for c in range(WIDTH)}
  for i in range(20):  # The centre is drawn for this image's sides, in this order.
    key = jax.random.PRNGKey(i)
    np.testing.assert_array_equal(
      da.cutout(image, key),
      _reference_cutout(image, *(int(v) for v in da.cutout_offset(key, HEIGHT, WIDTH))),
    )


def test_color_operations_follow_the_reference_formulas():
  image = _image(1)
  key = jax.random.PRNGKey(7)
  # Each operation of the policy draws from its own key, in order.
  keys = jax.random.split(key, 3)
  u = [float(jax.random.uniform(k)) for k in keys]
  x = image.astype(np.float64) + (u[0] - 0.5)
  x = (x - x.mean(axis=-1, keepdims=True)) * (2 * u[1]) + x.mean(axis=-1, keepdims=True)
  x = (x - x.mean()) * (u[2] + 0.5) + x.mean()
  np.testing.assert_allclose(da.augment_image(image, key, ("color",)), x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", ["translation", "cutout"])
def test_gradient_is_the_exact_adjoint_of_the_transform(policy):
  """For one fixed draw the transform is linear, A x; its input gradient of <A x, w> is A^T w."""
  key = jax.random.PRNGKey(3)
  image = _image(2, channels=1)
  weights = np.random.RandomState(4).randn(HEIGHT, WIDTH, 1)
  augment = lambda x: da.augment_image(x, key, (policy,))
  basis = np.eye(HEIGHT * WIDTH).reshape(-1, HEIGHT, WIDTH, 1).astype(np.float32)
  matrix = np.stack([np.asarray(augment(b)).ravel() for b in basis], axis=1)  # A
  grad = jax.grad(lambda x: jnp.sum(augment(x) * weights))(image)
  np.testing.assert_allclose(np.asarray(grad).ravel(), matrix.T @ weights.ravel(), atol=1e-6)
  assert np.abs(matrix - np.eye(HEIGHT * WIDTH)).max() > 0  # This draw moved something.


def test_each_example_is_augmented_the_same_on_8_devices_as_on_1():
  images = np.random.RandomState(5).uniform(-1, 1, (16, HEIGHT, WIDTH, 3)).astype(np.float32)
  key = jax.random.PRNGKey(11)
  policy = da.parse_policy("color,translation,cutout")
  run = lambda devices: np.asarray(
    jax.pmap(
      lambda x: da.diff_augment(x, key, policy),
      axis_name=noise.BATCH_AXIS,
      devices=jax.local_devices()[:devices],
    )(images.reshape((devices, -1) + images.shape[1:]))
  )
  on_8, on_1 = run(8).reshape(images.shape), run(1).reshape(images.shape)
  np.testing.assert_allclose(on_8, on_1, atol=1e-6)  # Float reductions may round apart.
  # Example i is augmented with fold_in(key, i): its own draw, not its neighbour's.
  for i in (0, 9):
    np.testing.assert_allclose(
      on_1[i], da.augment_image(images[i], jax.random.fold_in(key, i), policy), atol=1e-6
    )
  assert not np.allclose(on_1[0], da.augment_image(images[0], jax.random.fold_in(key, 1), policy))


def test_unknown_policy_lists_the_choices():
  with pytest.raises(UnknownNameError) as info:
    da.parse_policy("color, flip")
  assert str(info.value) == (
    "Unknown DiffAugment policy 'flip'; valid choices are: color, cutout, translation."
  )
  assert da.parse_policy("") == ()
