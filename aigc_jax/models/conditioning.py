"""Class conditioning by concatenation: the one-hot label joined to a network's input.

Used by the class-conditional VAE (Sohn, Lee & Yan 2015, "Learning Structured Output
Representation using Deep Conditional Generative Models"): the encoder sees (x, y) and the
decoder (z, y). The label is joined outside the network bodies, so every body can be
conditioned without knowing about labels.
"""

from typing import Optional

import jax
import jax.numpy as jnp


def join_label(x: jax.Array, onehot: Optional[jax.Array], flatten: bool = False) -> jax.Array:
  """`x` with the one-hot label `onehot [B, K]` joined on its last axis.

  Vectors `[B, D]` (and any input when `flatten`) become `[B, D + K]`, with `x` flattened
  first; other inputs, e.g. images `[B, H, W, C]`, get K constant channels:
  `[B, H, W, C + K]`. `onehot=None` returns `x` unchanged (unconditional).
  """
  if onehot is None:
    return x
  onehot = onehot.astype(x.dtype)
  if x.ndim == 2 or flatten:
    return jnp.concatenate([x.reshape((x.shape[0], -1)), onehot], axis=-1)
  constant = onehot.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + onehot.shape[-1:])
  return jnp.concatenate([x, jnp.broadcast_to(constant, x.shape[:-1] + onehot.shape[-1:])], axis=-1)
