"""Input corruptions of the denoising autoencoder (Vincent, Larochelle, Bengio & Manzagol 2008,
"Extracting and Composing Robust Features with Denoising Autoencoders"; the Gaussian and
salt-and-pepper kinds as in Vincent et al. 2010, JMLR 11).

A corruption maps one clean example `x [*sample_shape]` and its own key to a corrupted copy of
the same shape; `level` is the noise's strength. The family corrupts the encoder's input in
training only; the loss scores the reconstruction against the CLEAN input. Example i of the
global batch draws from `fold_in(step_key, i)` (`training.noise`), so 8 devices == 1 device.
Register a new one with `CORRUPTIONS.register("name")`: `(key, x, level) -> x_corrupted`.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from aigc_jax.registry import Registry
from aigc_jax.training import noise

CORRUPTIONS = Registry[Callable[[jax.Array, jax.Array, float], jax.Array]]("corruption")


@CORRUPTIONS.register("none")
def no_corruption(key, x, level):
  del key, level
  return x


@CORRUPTIONS.register("gaussian")
def additive_gaussian(key, x, level):
  """x + level * N(0, 1) per feature (not clipped); `level` is the noise's std."""
  return x + level * jax.random.normal(key, x.shape, x.dtype)


@CORRUPTIONS.register("masking")
def masking(key, x, level):
  """Each feature set to 0 with probability `level` (u < level, u ~ U[0, 1) per feature)."""
  return jnp.where(jax.random.uniform(key, x.shape) < level, jnp.zeros_like(x), x)


@CORRUPTIONS.register("salt_and_pepper")
def salt_and_pepper(key, x, level):
  """Each feature replaced with probability `level`, by 0 or 1 with equal probability.

  One uniform u per feature: u < level / 2 -> 0; level / 2 <= u < level -> 1; else kept.
  """
  u = jax.random.uniform(key, x.shape)
  return jnp.where(u < 0.5 * level, jnp.zeros_like(x), jnp.where(u < level, jnp.ones_like(x), x))


def corrupt_batch(name: str, level: float, step_key: jax.Array, x: jax.Array) -> jax.Array:
  """This device's examples `x [per_device, ...]`, each corrupted with its global index's key.

  Must run inside pmap / shard_map over `noise.BATCH_AXIS`.
  """
  corruption = CORRUPTIONS.get(name)
  indices = noise.global_example_indices(x.shape[0])
  return jax.vmap(lambda i, example: corruption(jax.random.fold_in(step_key, i), example, level))(
    indices, x
  )
