"""Hallucination rates of generative models, each with a 95% Wilson score interval.

A hallucination is a generated (or reconstructed) sample that the model presents as data but
that the data does not support. Four operational definitions, from least to most
supervision:

* manifold: the sample's features fall outside the k-NN manifold of real features
  (1 - per-sample precision of Kynkaanniemi et al. 2019);
* support: a dataset-specific rule (`SupportCheck`) says the sample is not a valid instance;
* class oracle: a pretrained classifier's probabilities show a reconstruction changed class
  (`reconstruction_class_flip_rate`), no class is recognisable (`unrecognisable_rate`), or a
  class-conditional sample is not of the requested class (`control_error_rate`).

Every rate function returns `(RateEstimate, flags)`, where `flags: [N] bool` is True for the
samples counted as hallucinations, so they can be inspected. All but
`support_hallucination_rate` (which calls arbitrary user code) are jittable; `RateEstimate`
is a pytree of scalar arrays (use `float(estimate.rate)` or `estimate.as_dict()` to log).
"""

import dataclasses
from typing import Protocol

import jax
import jax.numpy as jnp

from aigc_jax.evaluation import distribution

# Two-sided 95% normal quantile, Phi^{-1}(0.975).
Z_95 = 1.959963984540054


@dataclasses.dataclass(frozen=True)
class RateEstimate:
  """count of n samples flagged; rate = count / n; [ci_low, ci_high] its Wilson interval."""

  rate: jax.Array
  count: jax.Array
  n: jax.Array
  ci_low: jax.Array
  ci_high: jax.Array

  def as_dict(self) -> dict[str, float]:
    """Python numbers, for writers and logs."""
    return {
      "rate": float(self.rate),
      "count": int(self.count),
      "n": int(self.n),
      "ci_low": float(self.ci_low),
      "ci_high": float(self.ci_high),
    }


jax.tree_util.register_dataclass(
  RateEstimate, data_fields=["rate", "count", "n", "ci_low", "ci_high"], meta_fields=[]
)


def wilson_interval(count, n, z: float = Z_95) -> tuple[jax.Array, jax.Array]:
  """Wilson (1927) score interval for a binomial proportion p = count / n.

  centre = (p + z^2 / (2n)) / (1 + z^2 / n),
  half-width = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2)).
  Unlike the normal (Wald) interval it stays inside [0, 1] and is not empty at count = 0 or
  count = n (there the lower, resp. upper, bound is exactly 0, resp. 1, and the other bound
  is z^2 / (n + z^2) from the edge). n = 0 gives the uninformative [0, 1].
  Default z: the two-sided 95% normal quantile.

  Args:
    count: number of successes (scalar or array), 0 <= count <= n.
    n: number of trials.

  Returns:
    (low, high), float32 arrays of count's shape.
  """
  count = jnp.asarray(count, jnp.float32)
  n = jnp.asarray(n, jnp.float32)
  safe_n = jnp.maximum(n, 1.0)
  p = count / safe_n
  z2 = z * z
  denominator = 1.0 + z2 / safe_n
  centre = (p + z2 / (2.0 * safe_n)) / denominator
  half_width = z / denominator * jnp.sqrt(p * (1.0 - p) / safe_n + z2 / (4.0 * safe_n**2))
  # Exact at the edges rather than off by rounding.
  low = jnp.where(count <= 0, 0.0, jnp.clip(centre - half_width, 0.0, 1.0))
  high = jnp.where(count >= n, 1.0, jnp.clip(centre + half_width, 0.0, 1.0))
  empty = n <= 0
  return jnp.where(empty, 0.0, low), jnp.where(empty, 1.0, high)


def rate_from_flags(flags: jax.Array, z: float = Z_95) -> RateEstimate:
  """RateEstimate of the fraction of True among flags [N] bool (NaN rate when N = 0)."""
  flags = jnp.asarray(flags, bool).reshape(-1)
  n = flags.shape[0]
  count = jnp.sum(flags, dtype=jnp.int32)
  low, high = wilson_interval(count, n, z)
  rate = distribution.exact_fraction(count, n) if n else jnp.float32(jnp.nan)
  return RateEstimate(rate=rate, count=count, n=jnp.asarray(n, jnp.int32), ci_low=low, ci_high=high)


def manifold_hallucination_rate(
  real_feats: jax.Array,
  fake_feats: jax.Array,
  k: int = 3,
  *,
  chunk_size: int = distribution.DEFAULT_CHUNK_SIZE,
) -> tuple[RateEstimate, jax.Array]:
  """Fraction of generated samples outside the real k-NN manifold: 1 - precision.

  A generated feature y is off-manifold when ||y - x|| > NND_k(x) for every real x
  (Kynkaanniemi et al. 2019; see `distribution.manifold_membership`). Default k = 3 as there.

  Args:
    real_feats: [N, D] features of real data, N > k; fake_feats: [M, D] of generated samples.

  Returns:
    (estimate over the M samples, [M] bool, True = off the real manifold).
  """
  on_manifold = distribution.manifold_membership(fake_feats, real_feats, k, chunk_size=chunk_size)
  flags = jnp.logical_not(on_manifold)
  return rate_from_flags(flags), flags


class SupportCheck(Protocol):
  """Dataset-specific validity rule: `check(samples [N, ...]) -> [N] bool`, True = valid.

  For a synthetic dataset with a known generative rule (e.g. "exactly three dots", "a closed
  curve") the rule itself is the check; it may be numpy or jax code.
  """

  def __call__(self, samples) -> jax.Array: ...


def support_hallucination_rate(
  samples, validity_check: SupportCheck
) -> tuple[RateEstimate, jax.Array]:
  """Fraction of samples that `validity_check` rejects (outside the data's true support).

  Args:
    samples: [N, ...] generated samples, in whatever form the check expects.
    validity_check: a `SupportCheck`.

  Returns:
    (estimate over N, [N] bool, True = invalid).
  """
  valid = jnp.asarray(validity_check(samples))
  num_samples = len(samples)
  if valid.shape != (num_samples,) or valid.dtype != jnp.bool_:
    raise ValueError(
      f"validity_check must return [N] bool with N = {num_samples}, got {valid.dtype} {valid.shape}"
    )
  flags = jnp.logical_not(valid)
  return rate_from_flags(flags), flags


def _check_probs(probs, labels=None):
  if probs.ndim != 2:
    raise ValueError(f"oracle probabilities must be [N, K], got shape {probs.shape}")
  if labels is not None and labels.shape != probs.shape[:1]:
    raise ValueError(f"labels must be [N] = [{probs.shape[0]}], got shape {labels.shape}")


def _class_mismatch_rate(probs, labels) -> tuple[RateEstimate, jax.Array]:
  """Rate of argmax_c probs[i, c] != labels[i], with the per-sample flags."""
  probs, labels = jnp.asarray(probs), jnp.asarray(labels)
  _check_probs(probs, labels)
  flags = jnp.argmax(probs, axis=-1) != labels
  return rate_from_flags(flags), flags


def reconstruction_class_flip_rate(
  oracle_probs_recon: jax.Array, labels: jax.Array
) -> tuple[RateEstimate, jax.Array]:
  """Fraction of reconstructions that a class oracle assigns to another class than the input.

  flip_i = argmax_c p(c | recon_i) != label_i. `labels` are the inputs' classes: their true
  labels, or the oracle's own argmax on the inputs (which leaves the oracle's errors on real
  data out of the rate).

  Args:
    oracle_probs_recon: [N, K] oracle class probabilities (or logits) of the reconstructions.
    labels: [N] int classes of the inputs.

  Returns:
    (estimate over N, [N] bool, True = class flipped).
  """
  return _class_mismatch_rate(oracle_probs_recon, labels)


def unrecognisable_rate(
  oracle_probs: jax.Array, threshold: float = 0.5
) -> tuple[RateEstimate, jax.Array]:
  """Fraction of samples whose most likely class has oracle probability below `threshold`.

  unrecognisable_i = max_c p(c | x_i) < threshold. Default 0.5: below it no class holds a
  majority of the oracle's belief, so the oracle cannot say what the sample is even by its
  own best guess; the value does not depend on the number of classes K (1/K would flag
  nothing but exactly uniform outputs). Raise it (e.g. 0.9) for a stricter "clearly
  recognisable". Meaningful only for a calibrated oracle on probabilities, not logits.

  Args:
    oracle_probs: [N, K] class probabilities (rows sum to 1).
    threshold: in (0, 1].

  Returns:
    (estimate over N, [N] bool, True = unrecognisable).
  """
  probs = jnp.asarray(oracle_probs)
  _check_probs(probs)
  flags = jnp.max(probs, axis=-1) < threshold
  return rate_from_flags(flags), flags


def control_error_rate(
  oracle_probs: jax.Array, requested_labels: jax.Array
) -> tuple[RateEstimate, jax.Array]:
  """Fraction of class-conditional samples the oracle assigns to another class than requested.

  error_i = argmax_c p(c | x_i) != requested_i.

  Args:
    oracle_probs: [N, K] oracle class probabilities (or logits) of the generated samples.
    requested_labels: [N] int classes the generator was asked for.

  Returns:
    (estimate over N, [N] bool, True = wrong class).
  """
  return _class_mismatch_rate(oracle_probs, requested_labels)
