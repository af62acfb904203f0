"""Distribution metrics on feature sets: FID, KID, precision/recall, density/coverage, realism.

Features are `[N, D]` float arrays (e.g. Inception pool features of real and generated
images); real and generated sets may differ in size. Everything except the Frechet distance
is jittable and works on the accelerator. The k-NN metrics compute Euclidean distances in
`chunk_size x chunk_size` blocks (queries by `lax.map`, references by `lax.scan`, the last
block padded), so memory is O(chunk_size^2 + N k) and 50,000 x 50,000 never needs the full
matrix (chunk_size 1024: 4 MiB per block). Distances come from |x|^2 + |y|^2 - 2 x.y in
float32 at HIGHEST matmul precision (no TF32 on GPUs), after subtracting the real set's mean
from both sets to reduce cancellation; for features of at most `DIRECT_MAX_DIM` dimensions
(points) from the differences themselves: there the identity cancels to 0 for dense sets
(1-D points at distance 1 from the mean with neighbours 1e-5 apart: 1e-10 below float32's
1e-7), which made every k-NN radius 0.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST
DEFAULT_CHUNK_SIZE = 1024
DIRECT_MAX_DIM = 8  # Distances from differences up to this dimension ([c, c, D] per block).


# ---------------------------------------------------------------------------------------------
# Frechet distance (FID when the features are Inception-v3 pool features).


def gaussian_statistics(feats) -> tuple[np.ndarray, np.ndarray]:
  """Mean [D] and covariance [D, D] (float64, unbiased: divides by N - 1) of features [N, D].

  Cache these for the reference set and pass them to `frechet_distance_from_statistics`.
  """
  feats = np.asarray(feats, dtype=np.float64)
  if feats.ndim != 2 or feats.shape[0] < 2:
    raise ValueError(f"need features [N, D] with N >= 2, got shape {feats.shape}")
  return feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))


def frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, FID).

  d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}).
  Tr (S1 S2)^{1/2} is computed as the sum of square roots of the eigenvalues of the
  symmetric PSD matrix S1^{1/2} S2 S1^{1/2}, which has the same eigenvalues as S1 S2, with
  `numpy.linalg.eigh` in float64 and negative rounding-level eigenvalues clipped to 0. This
  avoids `scipy.linalg.sqrtm` of the non-symmetric S1 S2, whose complex parts and failures
  on singular covariances (N < D) need the usual epsilon hacks. Not jittable (numpy).

  Args:
    mu1, mu2: [D] means.
    sigma1, sigma2: [D, D] covariances (symmetric positive semi-definite).

  Returns:
    A Python float >= 0 up to rounding.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(
      f"mismatched statistics: means {mu1.shape}, {mu2.shape}; "
      f"covariances {sigma1.shape}, {sigma2.shape}"
    )
  eigvals1, eigvecs1 = np.linalg.eigh((sigma1 + sigma1.T) / 2)
  sqrt_sigma1 = (eigvecs1 * np.sqrt(np.clip(eigvals1, 0.0, None))) @ eigvecs1.T
  middle = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
  eigvals = np.linalg.eigvalsh((middle + middle.T) / 2)
  trace_sqrt_product = np.sum(np.sqrt(np.clip(eigvals, 0.0, None)))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product)


def frechet_distance(feats_a, feats_b) -> float:
  """Frechet distance between Gaussians fitted to features [N, D] and [M, D]; see
  `frechet_distance_from_statistics`. Sample-size biased (Chong & Forsyth 2020): compare
  scores only at equal N, M."""
  return frechet_distance_from_statistics(
    *gaussian_statistics(feats_a), *gaussian_statistics(feats_b)
  )


# ---------------------------------------------------------------------------------------------
# Kernel inception distance.


def kernel_inception_distance(
  feats_real, feats_fake, key, *, num_subsets: int = 100, subset_size: int = 1000
) -> tuple[jax.Array, jax.Array]:
  """KID (Binkowski, Sutherland, Arbel & Gretton 2018): unbiased MMD^2, averaged over subsets.

  For each of `num_subsets` subsets, draw m = `subset_size` rows of each set without
  replacement and compute
      MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
                - 2 sum_{i,j} k(x_i, y_j) / m^2,
  with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3. Defaults follow the paper's
  code (100 subsets of 1000). The estimator is unbiased, so it can be slightly negative
  when the sets come from one distribution.

  Args:
    feats_real: [N, D]; feats_fake: [M, D], both with at least `subset_size` rows.
    key: a jax PRNG key (or an int seed) choosing the subsets.

  Returns:
    (mean, std) over subsets of MMD^2_u, float32 scalars; std with ddof 0 as in the paper's
    code. The std describes subset-to-subset spread, not the error of the mean.
  """
  feats_real = jnp.asarray(feats_real)
  feats_fake = jnp.asarray(feats_fake)
  smallest = min(feats_real.shape[0], feats_fake.shape[0])
  if not 2 <= subset_size <= smallest:
    raise ValueError(
      f"subset_size must be in [2, {smallest}] (the smaller set's size), got {subset_size}"
    )
  if feats_real.shape[1] != feats_fake.shape[1]:
    raise ValueError(f"feature sizes differ: {feats_real.shape} vs {feats_fake.shape}")
  if isinstance(key, int):
    key = jax.random.key(key)
  mmd2 = _kid_subsets(feats_real, feats_fake, key, num_subsets, subset_size)
  return jnp.mean(mmd2), jnp.std(mmd2)


def unbiased_polynomial_mmd2(x: jax.Array, y: jax.Array) -> jax.Array:
  """Unbiased MMD^2 between x [m, D] and y [m, D] with k(x, y) = (x.y / D + 1)^3; a scalar."""
  m, dim = x.shape

  def kernel(u, v):
    return (jnp.matmul(u, v.T, precision=_HIGHEST) / dim + 1.0) ** 3

  k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
  off_diagonal_xx = jnp.sum(k_xx) - jnp.sum(jnp.diagonal(k_xx))
  off_diagonal_yy = jnp.sum(k_yy) - jnp.sum(jnp.diagonal(k_yy))
  return (off_diagonal_xx + off_diagonal_yy) / (m * (m - 1)) - 2.0 * jnp.sum(k_xy) / (m * m)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _kid_subsets(feats_real, feats_fake, key, num_subsets, subset_size):
  def one_subset(subset_key):
    key_real, key_fake = jax.random.split(subset_key)
    rows_real = jax.random.choice(key_real, feats_real.shape[0], (subset_size,), replace=False)
    rows_fake = jax.random.choice(key_fake, feats_fake.shape[0], (subset_size,), replace=False)
    return unbiased_polynomial_mmd2(
      feats_real[rows_real].astype(jnp.float32), feats_fake[rows_fake].astype(jnp.float32)
    )

  return jax.lax.map(one_subset, jax.random.split(key, num_subsets))


# ---------------------------------------------------------------------------------------------
# Chunked k-NN machinery.


def _blockwise(
  queries: jax.Array,
  refs: jax.Array,
  ref_values: jax.Array,
  chunk_size: int,
  init: Callable,
  update: Callable,
):
  """Folds `update` over blocks of the distance matrix without materialising it.

  `init(c)` makes a per-query carry (arrays with leading dim c); `update(carry, dist [c, c'],
  valid [c'], values [c', ...])` folds in one reference block (`valid` is False on padding).
  Returns the final carry for each of the n queries.
  """
  n, m = queries.shape[0], refs.shape[0]
  query_chunk, ref_chunk = min(chunk_size, n), min(chunk_size, m)
  num_query_chunks, num_ref_chunks = -(-n // query_chunk), -(-m // ref_chunk)

  def pad_rows(x, rows):
    return jnp.pad(x, [(0, rows - x.shape[0])] + [(0, 0)] * (x.ndim - 1))

  queries = pad_rows(queries, num_query_chunks * query_chunk).reshape(
    num_query_chunks, query_chunk, -1
  )
  refs = pad_rows(refs, num_ref_chunks * ref_chunk).reshape(num_ref_chunks, ref_chunk, -1)
  ref_values = pad_rows(ref_values, num_ref_chunks * ref_chunk).reshape(
    (num_ref_chunks, ref_chunk) + ref_values.shape[1:]
  )
  valid = (jnp.arange(num_ref_chunks * ref_chunk) < m).reshape(num_ref_chunks, ref_chunk)
  ref_sq_norms = jnp.sum(jnp.square(refs), axis=-1)

  def one_query_chunk(query_block):
    query_sq_norms = jnp.sum(jnp.square(query_block), axis=-1)

    def step(carry, block):
      ref_block, ref_sq, valid_block, values_block = block
      if query_block.shape[-1] <= DIRECT_MAX_DIM:
        differences = query_block[:, None, :] - ref_block[None, :, :]
        sq_dist = jnp.sum(jnp.square(differences), axis=-1)
      else:
        sq_dist = (
          query_sq_norms[:, None]
          + ref_sq[None, :]
          - 2.0 * jnp.matmul(query_block, ref_block.T, precision=_HIGHEST)
        )
      dist = jnp.sqrt(jnp.maximum(sq_dist, 0.0))
      return update(carry, dist, valid_block, values_block), None

    carry, _ = jax.lax.scan(step, init(query_chunk), (refs, ref_sq_norms, valid, ref_values))
    return carry

  carry = jax.lax.map(one_query_chunk, queries)
  return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:])[:n], carry)


def exact_fraction(count: jax.Array, total: int) -> jax.Array:
  """count / total in float32, correctly rounded, also under jit.

  XLA rewrites a division by a compile-time constant into a multiplication by its
  reciprocal, so `jnp.mean` of 230 Trues is 0.99999994 under jit; hiding the constant
  behind an optimization barrier keeps the true division.
  """
  denominator = jax.lax.optimization_barrier(jnp.float32(total))
  return count.astype(jnp.float32) / denominator


def _prepare(real, fake):
  real = jnp.asarray(real, jnp.float32)
  fake = jnp.asarray(fake, jnp.float32)
  center = jnp.mean(real, axis=0)
  return real - center, fake - center


def _k_smallest_distances(queries, refs, k, chunk_size):
  """[n, k] distances from each query to its k nearest refs, ascending."""

  def update(best, dist, valid, _):
    dist = jnp.where(valid[None, :], dist, jnp.inf)
    candidates = jnp.concatenate([best, dist], axis=1)
    return -jax.lax.top_k(-candidates, k)[0]

  return _blockwise(
    queries,
    refs,
    jnp.zeros(refs.shape[:1]),
    chunk_size,
    lambda c: jnp.full((c, k), jnp.inf, queries.dtype),
    update,
  )


def _knn_radii(feats, k, chunk_size):
  if feats.shape[0] <= k:
    raise ValueError(f"k-NN radii with k={k} need more than k samples, got {feats.shape[0]}")
  # The nearest "neighbour" of a sample within its own set is itself at distance 0, so the
  # k-th other sample is the (k+1)-th smallest (as in both papers' code).
  return _k_smallest_distances(feats, feats, k + 1, chunk_size)[:, k]


def _inside_any_ball(queries, centers, radii, chunk_size):
  """[n] bool: query within (<=) radius of at least one center (closed balls)."""

  def update(inside, dist, valid, radius):
    return inside | jnp.any((dist <= radius[None, :]) & valid[None, :], axis=1)

  return _blockwise(queries, centers, radii, chunk_size, lambda c: jnp.zeros((c,), bool), update)


@functools.partial(jax.jit, static_argnames=("k", "chunk_size"))
def knn_radii(feats: jax.Array, k: int = 3, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> jax.Array:
  """NND_k: distance from each of feats [N, D] to its k-th nearest other sample; [N] float32."""
  feats = jnp.asarray(feats, jnp.float32)
  return _knn_radii(feats - jnp.mean(feats, axis=0), k, chunk_size)


@functools.partial(jax.jit, static_argnames=("k", "chunk_size"))
def manifold_membership(
  queries: jax.Array, manifold_feats: jax.Array, k: int = 3, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> jax.Array:
  """Whether each query lies on the k-NN manifold of a set (Kynkaanniemi et al. 2019, eq. 1).

  f(q, Phi) = 1 iff ||q - phi|| <= NND_k(phi) for some phi in Phi, where NND_k(phi) is the
  distance from phi to its k-th nearest neighbour in Phi (the union of those closed balls is
  the estimated manifold).

  Args:
    queries: [n, D] features to test.
    manifold_feats: [N, D] features spanning the manifold, N > k.

  Returns:
    [n] bool.
  """
  manifold_feats, queries = _prepare(manifold_feats, queries)
  radii = _knn_radii(manifold_feats, k, chunk_size)
  return _inside_any_ball(queries, manifold_feats, radii, chunk_size)


@functools.partial(jax.jit, static_argnames=("k", "chunk_size"))
def precision_recall(
  real: jax.Array, fake: jax.Array, k: int = 3, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[jax.Array, jax.Array]:
  """Improved precision and recall (Kynkaanniemi, Karras, Laine, Lehtinen & Aila 2019).

  precision = mean over fake y of f(y, real), recall = mean over real x of f(x, fake), with
  f the k-NN manifold membership of `manifold_membership` (closed balls, `<=`, as in the
  authors' code). Default k = 3 as in the paper.

  Args:
    real: [N, D] features of real data; fake: [M, D] of generated data; N, M > k.

  Returns:
    (precision, recall), float32 scalars in [0, 1].
  """
  real, fake = _prepare(real, fake)
  real_radii = _knn_radii(real, k, chunk_size)
  fake_radii = _knn_radii(fake, k, chunk_size)
  precision = exact_fraction(
    jnp.sum(_inside_any_ball(fake, real, real_radii, chunk_size), dtype=jnp.int32), fake.shape[0]
  )
  recall = exact_fraction(
    jnp.sum(_inside_any_ball(real, fake, fake_radii, chunk_size), dtype=jnp.int32), real.shape[0]
  )
  return precision, recall


@functools.partial(jax.jit, static_argnames=("k", "chunk_size"))
def density_coverage(
  real: jax.Array, fake: jax.Array, k: int = 5, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[jax.Array, jax.Array]:
  """Density and coverage (Naeem, Oh, Uh, Choi & Yoo 2020).

  density = 1 / (k M) * sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))],
  coverage = 1 / N * sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))],
  over real X_i (N of them) and fake Y_j (M); balls are open (`<`, as in the authors' prdc
  code). Default k = 5 as in the paper. Density is unbounded (about 1 when the sets match);
  coverage is in [0, 1].

  Args:
    real: [N, D]; fake: [M, D]; N > k.

  Returns:
    (density, coverage), float32 scalars.
  """
  real, fake = _prepare(real, fake)
  real_radii = _knn_radii(real, k, chunk_size)

  def count_update(count, dist, valid, radius):
    return count + jnp.sum((dist < radius[None, :]) & valid[None, :], axis=1, dtype=jnp.int32)

  balls_per_fake = _blockwise(
    fake, real, real_radii, chunk_size, lambda c: jnp.zeros((c,), jnp.int32), count_update
  )
  # uint32: the total is at most N * M, which stays below 2^32 up to 65k x 65k.
  density = exact_fraction(jnp.sum(balls_per_fake, dtype=jnp.uint32), k * fake.shape[0])
  nearest_fake = _k_smallest_distances(real, fake, 1, chunk_size)[:, 0]
  coverage = exact_fraction(jnp.sum(nearest_fake < real_radii, dtype=jnp.int32), real.shape[0])
  return density, coverage


@functools.partial(jax.jit, static_argnames=("k", "chunk_size", "prune_percentile"))
def realism_score(
  real: jax.Array,
  fake: jax.Array,
  k: int = 3,
  *,
  prune_percentile: float | None = 50.0,
  eps: float = 1e-8,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> jax.Array:
  """Per-sample realism score (Kynkaanniemi et al. 2019, Sec. 5).

  R(y, Phi_r) = max_i NND_k(x_i) / max(||y - x_i||, eps) over real x_i. R >= 1 iff y lies
  in some real k-NN ball. As in the paper, real samples whose radius exceeds the
  `prune_percentile`-th percentile of all radii (the median by default; linear
  interpolation) are left out, so a few outliers with huge balls do not dominate; None keeps
  all. The authors' code takes the ratio of squared distances (with eps on the squares):
  that score is about this one squared, ranking samples identically.

  Args:
    real: [N, D]; fake: [M, D]; N > k.

  Returns:
    [M] float32 >= 0; large is realistic.
  """
  real, fake = _prepare(real, fake)
  radii = _knn_radii(real, k, chunk_size)
  if prune_percentile is not None:
    radii = jnp.where(radii > jnp.percentile(radii, prune_percentile), 0.0, radii)

  def update(best, dist, valid, radius):
    ratio = jnp.where(valid[None, :], radius[None, :] / jnp.maximum(dist, eps), 0.0)
    return jnp.maximum(best, jnp.max(ratio, axis=1))

  return _blockwise(fake, real, radii, chunk_size, lambda c: jnp.zeros((c,), jnp.float32), update)
