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


def flatten_features(x: jax.Array) -> jax.Array:
  """`[B, *sample_shape] -> [B, D]`, D the number of features.

  Per-feature terms are computed on this shape: XLA:CPU leaves an elementwise loop whose last
  axis has size 1 (NHWC images with one channel) unvectorised, which made the Bernoulli
  cross-entropy the largest op of the MLP VAE's step. Same values, bit for bit.
  """
  return x.reshape((x.shape[0], -1))


def bernoulli() -> Likelihood:
  """Outputs are logits; -log p = sum of sigmoid cross-entropies (x may be grey, in [0, 1])."""

  def nll(logits, x):
    return optax.sigmoid_binary_cross_entropy(flatten_features(logits), flatten_features(x)).sum(
      axis=-1
    )

  def mean(logits):
    return jax.nn.sigmoid(flatten_features(logits)).reshape(logits.shape)

  return Likelihood(nll=nll, mean=mean, needs_unit_interval=True)


def gaussian(scale: float) -> Likelihood:
  """Outputs are means of N(mean, scale^2) per feature, `scale` fixed by the config."""
  log_norm = math.log(scale) + 0.5 * math.log(2 * math.pi)

  def nll(mean, x):
    squared = jnp.square((flatten_features(x) - flatten_features(mean)) / scale)
    return (0.5 * squared + log_norm).sum(axis=-1)

  return Likelihood(nll=nll, mean=lambda mean: mean)


LIKELIHOODS = Registry[Callable[..., Likelihood]]("likelihood")
LIKELIHOODS.register("bernoulli")(lambda scale: bernoulli())
LIKELIHOODS.register("gaussian")(gaussian)


def get_likelihood(name: str, scale: float = 1.0) -> Likelihood:
  """The likelihood named by `model.likelihood`; `scale` is the Gaussian's fixed std."""
  return LIKELIHOODS.get(name)(scale)
