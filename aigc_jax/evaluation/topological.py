"""Topological precision (TopP of Kim et al. 2023, "TopP&R: Robust Support Estimation Approach
for Evaluating Fidelity and Diversity in Generative Models", NeurIPS) as a hallucination rate.

A published successor of k-NN precision. Instead of the union of k-NN balls, each support is
the set where a kernel density estimate exceeds a bootstrap confidence band, which keeps only
statistically significant regions and so ignores outliers of either set:

1. Features of more than 32 dimensions are projected to 32 by a fixed random Gaussian matrix
   (Xavier-normal, as the authors' code).
2. Bandwidth h of a set: the median over its samples of the distance to the k-th nearest
   other sample, k = 5 * D (the authors' "balloon" estimate for D > 3). For D <= 3 the
   authors pick among quantiles of the 50-th nearest-neighbour distance by persistent
   homology on a grid; here the median of that distance (k = 50) is used instead (with
   k = 5 * D = 10 in 2-D, most real points fell below the band: a floor of 0.84).
3. KDE with the cosine kernel, p(y) = (1/n) sum_i cos(pi/2 * |y - x_i| / h) over |y - x_i|
   <= h. The kernel's normalising constant (pi / 4h)^D is left out: it multiplies the
   estimate and the band alike, so the supports do not change, and it overflows float32 in
   32 dimensions.
4. Confidence band c_alpha: over B bootstrap resamples x* of the set,
   theta_b = max over the set's samples of |p(x) - p*(x)|, c = the (1 - alpha) quantile of
   theta (alpha = 0.1, B = 10, as the authors' defaults).
5. TopP = #{y generated : p_g(y) > c_g and p_r(y) > c_r} / #{y : p_g(y) > c_g}: among the
   generated samples in their own significant support, the fraction inside the real one.

The hallucination rate here is 1 - TopP, counted over the significant generated samples
(its n), with per-sample flags True for a significant sample outside the real support.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.evaluation import distribution, hallucination

PROJECTION_DIM = 32
PROJECTION_SEED = 99
LOW_DIMENSION = 3  # At or below: the bandwidth from the 50-th neighbour (the authors' choice).
LOW_DIMENSION_K = 50


def random_projection(feats, dim: int = PROJECTION_DIM, seed: int = PROJECTION_SEED):
  """[N, D] -> [N, dim] by a fixed Xavier-normal matrix (std sqrt(2 / (D + dim))) when D > dim;
  unchanged otherwise. The matrix depends on D and `seed` only, so real and generated sets
  share it."""
  feats = jnp.asarray(feats, jnp.float32)
  in_dim = feats.shape[1]
  if in_dim <= dim:
    return feats
  std = np.sqrt(2.0 / (in_dim + dim))
  matrix = np.random.default_rng(seed).normal(0.0, std, (in_dim, dim)).astype(np.float32)
  return jnp.matmul(feats, matrix, precision=jax.lax.Precision.HIGHEST)


def balloon_bandwidth(feats, k: int) -> float:
  """Median over samples of the distance to the k-th nearest other sample of [N, D] feats."""
  k = min(k, feats.shape[0] - 1)
  return float(jnp.median(distribution.knn_radii(feats, k)))


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def cosine_kde(
  queries, data_feats, weights, bandwidth, *, chunk_size: int = distribution.DEFAULT_CHUNK_SIZE
):
  """Unnormalised cosine-kernel KDE: sum_i w_i cos(pi/2 |q - x_i| / h) [|q - x_i| <= h] / sum w.

  Args:
    queries: [M, D]; data_feats: [N, D]; weights: [N] >= 0 (ones, or bootstrap counts).
    bandwidth: h > 0.

  Returns:
    [M] float32.
  """
  queries = jnp.asarray(queries, jnp.float32)
  data_feats = jnp.asarray(data_feats, jnp.float32)
  center = jnp.mean(data_feats, axis=0)
  weights = jnp.asarray(weights, jnp.float32)

  def update(total, dist, valid, w):
    kernel = jnp.where(
      (dist <= bandwidth) & valid[None, :], jnp.cos(0.5 * jnp.pi * dist / bandwidth), 0.0
    )
    return total + jnp.sum(kernel * w[None, :], axis=1)

  total = distribution._blockwise(  # pylint: disable=protected-access
    queries - center,
    data_feats - center,
    weights,
    chunk_size,
    lambda c: jnp.zeros((c,), jnp.float32),
    update,
  )
  return total / jnp.sum(weights)


@dataclasses.dataclass(frozen=True)
class TopologicalSupport:
  """A set's significant support: its features, bandwidth and confidence band.

  `density` is the KDE at the set's own samples; `significant = density > band`.
  """

  feats: jax.Array
  bandwidth: float
  band: float
  density: jax.Array

  @property
  def significant(self) -> jax.Array:
    return self.density > self.band

  def contains(self, queries) -> jax.Array:
    """[M] bool: the set's KDE at the queries exceeds its band."""
    ones = jnp.ones((self.feats.shape[0],), jnp.float32)
    return cosine_kde(queries, self.feats, ones, self.bandwidth) > self.band


def topological_support(
  feats, key, *, alpha: float = 0.1, num_bootstrap: int = 10, k_per_dim: int = 5
) -> TopologicalSupport:
  """Fits a set's support (steps 1-4 of the module docstring).

  Args:
    feats: [N, D] features (projected to 32 dimensions first when D > 32).
    key: PRNG key of the bootstrap resamples.
  """
  feats = random_projection(feats)
  num, dim = feats.shape
  k = k_per_dim * dim if dim > LOW_DIMENSION else LOW_DIMENSION_K
  bandwidth = max(balloon_bandwidth(feats, k), 1e-12)
  ones = jnp.ones((num,), jnp.float32)
  density = cosine_kde(feats, feats, ones, bandwidth)
  deviations = []
  for b in range(num_bootstrap):
    rows = jax.random.randint(jax.random.fold_in(key, b), (num,), 0, num)
    counts = jnp.zeros((num,), jnp.float32).at[rows].add(1.0)  # A resample as weights.
    deviations.append(
      float(jnp.max(jnp.abs(density - cosine_kde(feats, feats, counts, bandwidth))))
    )
  band = float(np.quantile(np.asarray(deviations), 1.0 - alpha)) if deviations else 0.0
  return TopologicalSupport(feats=feats, bandwidth=bandwidth, band=band, density=density)


def topological_hallucination_rate(
  real_support: TopologicalSupport, fake_feats, key, **kwargs
) -> tuple[hallucination.RateEstimate, jax.Array]:
  """1 - TopP of generated features against a fitted real support.

  Args:
    real_support: `topological_support` of the real reference features.
    fake_feats: [M, D] generated features (same space as the real ones, before projection).
    key: PRNG key of the generated set's bootstrap.

  Returns:
    (estimate over the significant generated samples, [M] bool flags: significant and
    outside the real support).
  """
  fake = topological_support(fake_feats, key, **kwargs)
  inside_real = real_support.contains(fake.feats)
  significant = fake.significant
  flags = significant & ~inside_real
  count = jnp.sum(flags, dtype=jnp.int32)
  n = int(jnp.sum(significant))
  low, high = hallucination.wilson_interval(count, n)
  rate = distribution.exact_fraction(count, n) if n else jnp.float32(jnp.nan)
  return hallucination.RateEstimate(
    rate=rate, count=count, n=jnp.asarray(n, jnp.int32), ci_low=low, ci_high=high
  ), flags
