"""Observation models p(x | decoder outputs) for AE and VAE reconstructions.

Each likelihood gives the per-example negative log-likelihood, summed over all features
(pixels, or coordinates of points; nats), and the distribution's mean. Data `x` are
`[B, *sample_shape]`: images in [0, 1], or unbounded values such as 2-D points (gaussian).
Register a new one with `LIKELIHOODS.register("name")`: a factory `(scale) -> Likelihood`.
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
  """`nll(outputs, x) -> [B]` nats summed over features; `mean(outputs) -> [B, *sample_shape]`.

  `mean` is the distribution's mean, not clipped: the family clips it to [0, 1] for images
  (`model.output_range = "unit"`). `needs_unit_interval`: the model is only defined for data
  in [0, 1] (Bernoulli), so it cannot serve unbounded data.
  """
  nll: Callable[[jax.Array, jax.Array], jax.Array]
  mean: Callable[[jax.Array], jax.Array]
  needs_unit_interval: bool = False


def _sum_per_example(values):
  return values.reshape((values.shape[0], -1)).sum(axis=-1)


def bernoulli() -> Likelihood:
  """Outputs are logits; -log p = sum of sigmoid cross-entropies (x may be grey, in [0, 1])."""
  return Likelihood(
      nll=lambda logits, x: _sum_per_example(optax.sigmoid_binary_cross_entropy(logits, x)),
      mean=jax.nn.sigmoid, needs_unit_interval=True)


def gaussian(scale: float) -> Likelihood:
  """Outputs are means of N(mean, scale^2) per feature, `scale` fixed by the config."""
  log_norm = math.log(scale) + 0.5 * math.log(2 * math.pi)

  def nll(mean, x):
    return _sum_per_example(0.5 * jnp.square((x - mean) / scale) + log_norm)

  return Likelihood(nll=nll, mean=lambda mean: mean)


LIKELIHOODS = Registry[Callable[..., Likelihood]]("likelihood")
LIKELIHOODS.register("bernoulli")(lambda scale: bernoulli())
LIKELIHOODS.register("gaussian")(gaussian)


def get_likelihood(name: str, scale: float = 1.0) -> Likelihood:
  """The likelihood named by `model.likelihood`; `scale` is the Gaussian's fixed std."""
  return LIKELIHOODS.get(name)(scale)
