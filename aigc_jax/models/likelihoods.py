"""Observation models p(x | decoder outputs) for AE and VAE reconstructions.

Each likelihood gives the per-example negative log-likelihood, summed over pixels (nats),
and the mean image. Images `x` are `[B, H, W, C]` in [0, 1].
"""
import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from aigc_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class Likelihood:
  """`nll(outputs, x) -> [B]` nats summed over pixels; `mean(outputs) -> [B,H,W,C]` in [0, 1]."""
  nll: Callable[[jax.Array, jax.Array], jax.Array]
  mean: Callable[[jax.Array], jax.Array]


def _sum_per_example(values):
  return values.reshape((values.shape[0], -1)).sum(axis=-1)


def bernoulli() -> Likelihood:
  """Outputs are logits; -log p = sum of sigmoid cross-entropies (x may be grey, in [0, 1])."""
  return Likelihood(
      nll=lambda logits, x: _sum_per_example(optax.sigmoid_binary_cross_entropy(logits, x)),
      mean=jax.nn.sigmoid)


def gaussian(scale: float) -> Likelihood:
  """Outputs are means of N(mean, scale^2) per pixel, `scale` fixed by the config."""
  log_norm = math.log(scale) + 0.5 * math.log(2 * math.pi)

  def nll(mean, x):
    return _sum_per_example(0.5 * jnp.square((x - mean) / scale) + log_norm)

  return Likelihood(nll=nll, mean=lambda mean: jnp.clip(mean, 0.0, 1.0))


LIKELIHOODS = Registry[Callable[..., Likelihood]]("likelihood")
LIKELIHOODS.register("bernoulli")(lambda scale: bernoulli())
LIKELIHOODS.register("gaussian")(gaussian)


def get_likelihood(name: str, scale: float = 1.0) -> Likelihood:
  """The likelihood named by `model.likelihood`; `scale` is the Gaussian's fixed std."""
  return LIKELIHOODS.get(name)(scale)
