"""Mode-collapse metrics of samples from a mixture with known modes (the PacGAN 2-D metrics).

Lin, Khetan, Fanti & Oh (PacGAN, NeurIPS 2018), after Srivastava et al. (VEEGAN, 2017), as in
the authors' code (fjxmlzn/PacGAN, `synthetic_data_experiments/PacGAN/pacgan/extensions.py`,
`MetricLogger`): each sample is assigned to the mode nearest in diagonal Mahalanobis distance
d = sqrt(sum_j ((x_j - mu_kj) / sigma_kj)^2); it is high quality when d < 3 (strict);

* modes captured: the number of modes with at least one high-quality sample assigned;
* high-quality fraction: high-quality samples / all samples;
* reverse KL: KL(p || uniform) = sum_k p_k log(p_k K) in nats, with p the histogram of the
  high-quality samples over the K modes. Empty bins contribute 0 (0 log 0 = 0: a missed mode
  costs through the mass the other modes carry instead), so the value is finite, between 0
  (every mode equally often) and log K (one mode only). With no high-quality sample at all
  the histogram is undefined and the value is NaN. (The 2-D code logs no KL; the authors'
  stacked-MNIST code computes this same KL of the mode histogram to uniform.)

On samples of the true mixture the expected high-quality fraction is P(chi2_D < 9), which is
1 - exp(-4.5) = 0.9889 in 2-D. All functions are jittable.
"""

import dataclasses

import jax
import jax.numpy as jnp

from aigc_jax.evaluation import distribution

HIGH_QUALITY_THRESHOLD = 3.0


@dataclasses.dataclass(frozen=True)
class ModeCollapseMetrics:
  """PacGAN's 2-D metrics of N samples from a K-mode mixture (scalars are 0-d arrays).

  Attributes:
    modes_captured: int32, modes with at least one high-quality sample.
    high_quality_fraction: float32 in [0, 1].
    reverse_kl: float32 nats, KL(high-quality mode histogram || uniform); NaN if none.
    counts: [K] int32, high-quality samples per mode.
  """

  modes_captured: jax.Array
  high_quality_fraction: jax.Array
  reverse_kl: jax.Array
  counts: jax.Array

  def as_dict(self) -> dict:
    """Python numbers, for writers and logs."""
    return {
      "modes_captured": int(self.modes_captured),
      "high_quality_fraction": float(self.high_quality_fraction),
      "reverse_kl": float(self.reverse_kl),
      "counts": [int(c) for c in self.counts],
    }


jax.tree_util.register_dataclass(
  ModeCollapseMetrics,
  data_fields=["modes_captured", "high_quality_fraction", "reverse_kl", "counts"],
  meta_fields=[],
)


def nearest_mode(samples: jax.Array, means: jax.Array, stds) -> tuple[jax.Array, jax.Array]:
  """Nearest mode of each sample by diagonal Mahalanobis distance.

  Args:
    samples: [N, D].
    means: [K, D] mode centres.
    stds: per-mode standard deviations, [K, D], [K] (isotropic) or a scalar.

  Returns:
    (modes [N] int32, distances [N] float32 in standard deviations).
  """
  samples = jnp.asarray(samples, jnp.float32)
  means = jnp.asarray(means, jnp.float32)
  stds = jnp.asarray(stds, jnp.float32)
  if stds.ndim == 1:
    stds = stds[:, None]
  scaled = (samples[:, None, :] - means[None]) / stds[None]  # [N, K, D]
  squared = jnp.sum(jnp.square(scaled), axis=-1)
  modes = jnp.argmin(squared, axis=1).astype(jnp.int32)
  return modes, jnp.sqrt(jnp.take_along_axis(squared, modes[:, None], axis=1)[:, 0])


def reverse_kl_to_uniform(counts: jax.Array) -> jax.Array:
  """KL(p || uniform over K) in nats, p = counts / sum(counts); 0 log 0 = 0; NaN if all zero.

  Args:
    counts: [K] non-negative counts.
  """
  counts = jnp.asarray(counts, jnp.float32)
  total = jnp.sum(counts)
  p = counts / jnp.maximum(total, 1.0)
  terms = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0) * counts.shape[0]), 0.0)
  return jnp.where(total > 0, jnp.sum(terms), jnp.nan)


def mode_collapse_metrics(
  samples: jax.Array, means: jax.Array, stds, threshold: float = HIGH_QUALITY_THRESHOLD
) -> ModeCollapseMetrics:
  """Modes captured, high-quality fraction and reverse KL of samples (see the module docstring).

  Args:
    samples: [N, D] generated samples, N >= 1.
    means: [K, D] the mixture's modes; stds: [K, D], [K] or a scalar.
    threshold: the high-quality radius in standard deviations (PacGAN: 3).

  Returns:
    A `ModeCollapseMetrics`.
  """
  modes, distances = nearest_mode(samples, means, stds)
  high_quality = distances < threshold
  counts = jnp.zeros(jnp.shape(means)[0], jnp.int32).at[modes].add(high_quality.astype(jnp.int32))
  return ModeCollapseMetrics(
    modes_captured=jnp.sum(counts > 0, dtype=jnp.int32),
    high_quality_fraction=distribution.exact_fraction(
      jnp.sum(high_quality, dtype=jnp.int32), modes.shape[0]
    ),
    reverse_kl=reverse_kl_to_uniform(counts),
    counts=counts,
  )
