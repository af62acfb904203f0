"""Distribution metrics against closed forms and direct float64 numpy versions of the papers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from aigc_jax.evaluation import distribution


def _features(seed=0, num_real=230, num_fake=190, dim=12, shift=0.3):
  rng = np.random.default_rng(seed)
  real = rng.standard_normal((num_real, dim))
  fake = 1.2 * rng.standard_normal((num_fake, dim)) + shift
  return real.astype(np.float32), fake.astype(np.float32)


# ---- Direct numpy versions of the definitions (float64, full distance matrices). -----------


def _distances(a, b):
  a, b = a.astype(np.float64), b.astype(np.float64)
  return np.sqrt(np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1))


def _radii(feats, k):
  return np.sort(_distances(feats, feats), axis=1)[:, k]  # column 0 is the sample itself


def _reference_precision_recall(real, fake, k):
  d = _distances(real, fake)
  precision = np.mean(np.any(d <= _radii(real, k)[:, None], axis=0))
  recall = np.mean(np.any(d <= _radii(fake, k)[None, :], axis=1))
  return precision, recall


def _reference_density_coverage(real, fake, k):
  d = _distances(real, fake)
  radii = _radii(real, k)
  density = np.sum(d < radii[:, None]) / (k * fake.shape[0])
  coverage = np.mean(d.min(axis=1) < radii)
  return density, coverage


def _reference_mmd2(x, y):
  x, y = x.astype(np.float64), y.astype(np.float64)
  m, dim = x.shape
  kernel = lambda u, v: (u @ v.T / dim + 1.0) ** 3
  k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
  return (
    (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    - 2 * k_xy.mean()
  )


# ---- Frechet distance. ---------------------------------------------------------------------


def _random_spd(rng, dim):
  a = rng.standard_normal((dim, dim))
  return a @ a.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_matches_two_by_two_closed_form():
  # For 2x2 SPD M: Tr sqrt(M') with M' = S1 S2 has eigenvalues l1, l2 > 0, so
  # Tr sqrt(S1 S2) = sqrt(l1) + sqrt(l2) = sqrt(Tr(S1 S2) + 2 sqrt(det(S1 S2))).
  s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
  s2 = np.array([[0.5, -0.3], [-0.3, 1.5]])  # does not commute with s1
  mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 0.5])
  trace_sqrt = np.sqrt(np.trace(s1 @ s2) + 2 * np.sqrt(np.linalg.det(s1 @ s2)))
  expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
  ours = distribution.frechet_distance_from_statistics(mu1, s1, mu2, s2)
  print(f"frechet 2x2 closed form {expected:.12f}, ours {ours:.12f}")
  assert abs(ours - expected) < 1e-12


def test_frechet_distance_matches_sqrtm_formula_and_diagonal_closed_form():
  rng = np.random.default_rng(1)
  s1, s2 = _random_spd(rng, 10), _random_spd(rng, 10)
  mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
  assert abs(distribution.frechet_distance_from_statistics(mu1, s1, mu2, s2) - expected) < 1e-9
  # Commuting (diagonal) covariances: sum of (sqrt(a_i) - sqrt(b_i))^2.
  a, b = rng.random(10) + 0.1, rng.random(10) + 0.1
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  ours = distribution.frechet_distance_from_statistics(mu1, np.diag(a), mu2, np.diag(b))
  assert abs(ours - expected) < 1e-12
  assert abs(distribution.frechet_distance_from_statistics(mu1, s1, mu1, s1)) < 1e-12


def test_frechet_distance_of_samples_approaches_the_gaussians_distance():
  rng = np.random.default_rng(2)
  s1, s2 = _random_spd(rng, 4), _random_spd(rng, 4)
  mu1, mu2 = np.zeros(4), np.full(4, 0.5)
  x = rng.multivariate_normal(mu1, s1, size=40_000)
  y = rng.multivariate_normal(mu2, s2, size=40_000)
  expected = distribution.frechet_distance_from_statistics(mu1, s1, mu2, s2)
  ours = distribution.frechet_distance(x, y)
  print(f"frechet from 40k samples {ours:.4f} vs population {expected:.4f}")
  assert abs(ours - expected) < 0.03 * expected
  mu, sigma = distribution.gaussian_statistics(x)
  np.testing.assert_allclose(mu, x.mean(axis=0))
  np.testing.assert_allclose(sigma, np.cov(x.T))
  assert abs(distribution.frechet_distance(x, x)) < 1e-9
  # Singular covariances (N < D) still give a finite, non-negative distance.
  assert 0 <= distribution.frechet_distance(x[:3, :], y[:3, :]) < np.inf


# ---- k-NN metrics. -------------------------------------------------------------------------


def test_precision_recall_and_density_coverage_match_the_definitions():
  real, fake = _features()
  expected_pr = _reference_precision_recall(real, fake, 3)
  expected_dc = _reference_density_coverage(real, fake, 5)
  for chunk_size in (7, 64, 4096):  # 4096 > N, M: a single block, i.e. unchunked
    pr = distribution.precision_recall(real, fake, 3, chunk_size=chunk_size)
    dc = distribution.density_coverage(real, fake, 5, chunk_size=chunk_size)
    # Exact: both are counts divided by the same integers.
    assert [float(v) for v in pr] == [np.float32(v) for v in expected_pr]
    assert [float(v) for v in dc] == [np.float32(v) for v in expected_dc]
  # The shifted, wider fake set is neither perfect nor disjoint.
  assert 0.2 < expected_pr[0] < 0.95 and 0.2 < expected_pr[1] < 0.95


def test_k_changes_the_manifold_as_in_the_definition():
  real, fake = _features(seed=3)
  for k in (1, 4):
    assert [float(v) for v in distribution.precision_recall(real, fake, k, chunk_size=50)] == [
      np.float32(v) for v in _reference_precision_recall(real, fake, k)
    ]


def test_chunked_radii_and_realism_agree_with_unchunked_and_numpy():
  real, fake = _features(seed=4)
  radii = {c: np.asarray(distribution.knn_radii(real, 3, chunk_size=c)) for c in (9, 100, 1000)}
  np.testing.assert_allclose(radii[9], _radii(real, 3), rtol=1e-5)
  # Different block shapes may round the matmul differently: equal to an ulp or so, not bitwise.
  print(
    "knn radii: max |chunk 9 - numpy| = %.2e, max |chunk 9 - unchunked| = %.2e"
    % (np.abs(radii[9] - _radii(real, 3)).max(), np.abs(radii[9] - radii[1000]).max())
  )
  np.testing.assert_allclose(radii[9], radii[100], rtol=1e-6)
  np.testing.assert_allclose(radii[9], radii[1000], rtol=1e-6)
  reference_radii = _radii(real, 3)
  d = _distances(real, fake)
  pruned = np.where(reference_radii > np.median(reference_radii), 0.0, reference_radii)
  for prune, expected_radii in ((50.0, pruned), (None, reference_radii)):
    expected = np.max(expected_radii[:, None] / d, axis=0)
    for chunk_size in (11, 1000):
      ours = np.asarray(
        distribution.realism_score(real, fake, 3, prune_percentile=prune, chunk_size=chunk_size)
      )
      np.testing.assert_allclose(ours, expected, rtol=1e-5)
  # Unpruned, R >= 1 exactly on the manifold.
  unpruned = np.asarray(distribution.realism_score(real, fake, 3, prune_percentile=None))
  np.testing.assert_array_equal(unpruned >= 1.0, distribution.manifold_membership(fake, real, 3))


def test_manifold_membership_matches_definition_and_flags_outliers():
  real, fake = _features(seed=5)
  fake[:10] += 100.0  # far from everything
  expected = np.any(_distances(real, fake) <= _radii(real, 3)[:, None], axis=0)
  inside = np.asarray(distribution.manifold_membership(fake, real, 3, chunk_size=16))
  np.testing.assert_array_equal(inside, expected)
  assert not inside[:10].any() and inside[10:].mean() > 0.2
  assert np.all(np.asarray(distribution.realism_score(real, fake[:10], 3)) < 0.1)


def test_ball_boundaries_follow_the_papers_code():
  # On an integer grid every distance is exact, so boundary ties really happen: each real
  # point's nearest neighbour (k = 1) is at exactly 1, and the fakes sit exactly 1 away from
  # the grid's last column. Kynkaanniemi et al.'s code counts the boundary (<=), Naeem et
  # al.'s does not (<).
  grid = np.stack(np.meshgrid(np.arange(10), np.arange(10), indexing="ij"), -1).reshape(-1, 2)
  real = grid.astype(np.float32)
  fake = np.stack([np.full(10, 10.0), np.arange(10.0)], axis=1).astype(np.float32)
  np.testing.assert_array_equal(distribution.knn_radii(real, 1), 1.0)
  precision, _ = distribution.precision_recall(real, fake, 1)
  density, coverage = distribution.density_coverage(real, fake, 1)
  assert float(precision) == 1.0
  assert float(density) == 0.0 and float(coverage) == 0.0
  np.testing.assert_array_equal(
    distribution.realism_score(real, fake, 1, prune_percentile=None), 1.0
  )


def test_identical_sets_are_perfect():
  real, _ = _features(seed=6)
  precision, recall = distribution.precision_recall(real, real, 3, chunk_size=64)
  density, coverage = distribution.density_coverage(real, real, 5, chunk_size=64)
  assert float(precision) == 1.0 and float(recall) == 1.0 and float(coverage) == 1.0
  assert (
    float(density) > 0.8
  )  # about 1 for matched distributions; here each X_i lies in its own ball


def test_permuting_samples_changes_nothing():
  real, fake = _features(seed=7)
  rng = np.random.default_rng(0)
  real_p, fake_p = real[rng.permutation(len(real))], fake[rng.permutation(len(fake))]
  for metric, k in ((distribution.precision_recall, 3), (distribution.density_coverage, 5)):
    original = [float(v) for v in metric(real, fake, k, chunk_size=32)]
    permuted = [float(v) for v in metric(real_p, fake_p, k, chunk_size=32)]
    assert original == permuted


def test_knn_metrics_reject_too_few_samples():
  real, fake = _features(num_real=3)
  with pytest.raises(ValueError, match="more than k"):
    distribution.precision_recall(real, fake, 3)


def test_memory_does_not_grow_with_the_full_distance_matrix():
  # Compile (not run) at the full FID scale: 50k x 50k distances would be 9.3 GiB in float32.
  feats = jax.ShapeDtypeStruct((50_000, 2048), jnp.float32)
  compiled = distribution.precision_recall.lower(feats, feats, 3, chunk_size=1024).compile()
  memory = compiled.memory_analysis()
  if memory is None:
    pytest.skip("this backend reports no memory analysis")
  temp_gib = memory.temp_size_in_bytes / 2**30
  print(
    f"precision_recall 50k x 50k x 2048: {temp_gib:.2f} GiB temporaries "
    f"(+{memory.argument_size_in_bytes / 2**30:.2f} GiB arguments)"
  )
  assert temp_gib < 2.0


# ---- KID. ----------------------------------------------------------------------------------


def test_unbiased_mmd2_matches_numpy():
  real, fake = _features(seed=8, num_real=150, num_fake=150)
  ours = float(distribution.unbiased_polynomial_mmd2(jnp.asarray(real), jnp.asarray(fake)))
  expected = _reference_mmd2(real, fake)
  print(f"mmd2 ours {ours:.8f} numpy {expected:.8f}")
  assert abs(ours - expected) < 1e-5 * max(1.0, abs(expected))


def test_kid_with_whole_sets_as_subsets_is_the_full_mmd2():
  real, fake = _features(seed=9, num_real=120, num_fake=120)
  mean, std = distribution.kernel_inception_distance(
    real, fake, jax.random.key(0), num_subsets=3, subset_size=120
  )
  # Every subset is a permutation of the whole set, which MMD^2 does not see.
  assert abs(float(mean) - _reference_mmd2(real, fake)) < 1e-5
  assert float(std) < 1e-5


def test_kid_near_zero_for_one_distribution_and_positive_for_a_shift():
  rng = np.random.default_rng(10)
  real, same, shifted = (rng.standard_normal((600, 16)).astype(np.float32) for _ in range(3))
  shifted = shifted + 0.5
  same_mean, same_std = distribution.kernel_inception_distance(
    real, same, 0, num_subsets=20, subset_size=200
  )
  shift_mean, shift_std = distribution.kernel_inception_distance(
    real, shifted, 0, num_subsets=20, subset_size=200
  )
  print(
    f"kid same {float(same_mean):.5f}+-{float(same_std):.5f}, "
    f"shifted {float(shift_mean):.5f}+-{float(shift_std):.5f}"
  )
  assert abs(float(same_mean)) < 0.1 * float(shift_mean)
  assert float(shift_mean) > 5 * float(shift_std) > 0
  with pytest.raises(ValueError, match="subset_size"):
    distribution.kernel_inception_distance(real, same, 0, subset_size=1000)


def test_knn_radii_of_dense_points_are_their_float64_distances():
  """1-D points 1 from their mean with neighbours ~1e-5 apart: |x|^2 + |y|^2 - 2xy cancels to
  0 in float32 (every radius was 0, every realism score 0); differences do not."""
  rng = np.random.RandomState(0)
  points = np.concatenate([rng.normal(m, 0.05, 3_000) for m in (1.0, 2.0, 3.0)])[:, None]
  points = points.astype(np.float32)
  radii = np.asarray(distribution.knn_radii(points, k=3, chunk_size=512))
  gaps = np.abs(points.astype(np.float64) - points.astype(np.float64).T)
  want = np.sort(gaps, axis=1)[:, 3]  # The 3rd nearest other point (index 0 is itself).
  np.testing.assert_allclose(radii, want, rtol=1e-4, atol=1e-7)
  assert np.all(radii > 0)
  between = np.array([[1.5]], np.float32)
  realism = np.asarray(distribution.realism_score(points, np.concatenate([points[:200], between])))
  assert np.median(realism[:200]) >= 1.0 and realism[200] < 0.01  # Was 0 for all of them.
