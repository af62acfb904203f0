"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random augmentation policy is applied to every image the discriminator sees, real
and generated, in the discriminator's loss and in the generator's; every operation is
differentiable in the image, so the generator trains through it. The operations follow the
authors' reference code (DiffAugment_pytorch.py) on images in [-1, 1]:
- color: brightness + U(-0.5, 0.5); saturation (x - channel mean) * U(0, 2) + channel mean;
  contrast (x - image mean) * U(0.5, 1.5) + image mean.
- translation: shift by integers in [-r, r] rows and columns, r = int(0.125 * side + 0.5),
  zeros shifted in.
- cutout: zero a square of int(0.5 * side + 0.5) pixels a side centred at a uniform
  position (clipped at the border).
Each example's draws come from `fold_in(key, i)`, i its index in the global batch, so an
example is augmented the same way on 1 device or 8.
"""

from typing import Callable, Sequence, Tuple

import jax
import jax.numpy as jnp

from aigc_jax.errors import ConfigError
from aigc_jax.registry import Registry
from aigc_jax.training import noise

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def brightness(image, key):
  return image + (jax.random.uniform(key) - 0.5)


def saturation(image, key):
  mean = jnp.mean(image, axis=-1, keepdims=True)
  return (image - mean) * (jax.random.uniform(key) * 2.0) + mean


def contrast(image, key):
  mean = jnp.mean(image)
  return (image - mean) * (jax.random.uniform(key) + 0.5) + mean


def translation_shift(key, height: int, width: int) -> Tuple[jax.Array, jax.Array]:
  """Row and column shifts, uniform integers in [-r, r] with r = int(0.125 * side + 0.5)."""
  row_key, col_key = jax.random.split(key)
  max_row = int(height * TRANSLATION_RATIO + 0.5)
  max_col = int(width * TRANSLATION_RATIO + 0.5)
  return (
    jax.random.randint(row_key, (), -max_row, max_row + 1),
    jax.random.randint(col_key, (), -max_col, max_col + 1),
  )


def translate(image, row_shift, col_shift):
  """`out[i, j] = image[i + row_shift, j + col_shift]`, 0 outside; image `[H, W, C]`."""
  height, width = image.shape[:2]
  padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)))
  rows = jnp.clip(jnp.arange(height) + row_shift + 1, 0, height + 1)
  cols = jnp.clip(jnp.arange(width) + col_shift + 1, 0, width + 1)
  return padded[rows][:, cols]


def translation(image, key):
  return translate(image, *translation_shift(key, *image.shape[:2]))


def cutout_size(height: int, width: int) -> Tuple[int, int]:
  return int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)


def cutout_offset(key, height: int, width: int) -> Tuple[jax.Array, jax.Array]:
  """Square centres, uniform in [0, side + (1 - size % 2)) as in the reference code."""
  row_key, col_key = jax.random.split(key)
  size_rows, size_cols = cutout_size(height, width)
  return (
    jax.random.randint(row_key, (), 0, height + (1 - size_rows % 2)),
    jax.random.randint(col_key, (), 0, width + (1 - size_cols % 2)),
  )


def cut_out(image, row_offset, col_offset):
  """Zeroes rows [o - s // 2, o - s // 2 + s) x the same for columns, within the image."""
  height, width = image.shape[:2]
  size_rows, size_cols = cutout_size(height, width)
  row_start, col_start = row_offset - size_rows // 2, col_offset - size_cols // 2
  rows, cols = jnp.arange(height), jnp.arange(width)
  in_rows = (rows >= row_start) & (rows < row_start + size_rows)
  in_cols = (cols >= col_start) & (cols < col_start + size_cols)
  keep = 1.0 - (in_rows[:, None] & in_cols[None, :]).astype(image.dtype)
  return image * keep[..., None]


def cutout(image, key):
  return cut_out(image, *cutout_offset(key, *image.shape[:2]))


AUGMENTATIONS = Registry[Sequence[Callable]]("DiffAugment policy")
AUGMENTATIONS.register("color")((brightness, saturation, contrast))
AUGMENTATIONS.register("translation")((translation,))
AUGMENTATIONS.register("cutout")((cutout,))


def parse_policy(policy: str) -> Tuple[str, ...]:
  """ "color,translation" -> ("color", "translation"); "" -> (); unknown names fail."""
  names = tuple(name.strip() for name in policy.split(",") if name.strip())
  for name in names:
    AUGMENTATIONS.get(name)
  return names


def augment_image(image, key, policy: Sequence[str]):
  """One image `[H, W, C]` through every operation of `policy`, in order; its own key each."""
  operations = [op for name in policy for op in AUGMENTATIONS.get(name)]
  for operation, op_key in zip(operations, jax.random.split(key, len(operations))):
    image = operation(image, op_key)
  return image


def diff_augment(images, key, policy: Sequence[str]):
  """`images [N, H, W, C]` augmented per example; example i draws from `fold_in(key, i)`.

  i is the example's index in the global batch: call inside pmap / shard_map over
  `noise.BATCH_AXIS`.
  """
  if not policy:
    return images
  if images.ndim != 4:
    raise ConfigError(
      f"DiffAugment works on images [N, H, W, C]; these samples have shape "
      f"{images.shape[1:]}; set model.gan.diff_augment=''."
    )
  indices = noise.global_example_indices(images.shape[0])
  return jax.vmap(lambda image, i: augment_image(image, jax.random.fold_in(key, i), policy))(
    images, indices
  )
