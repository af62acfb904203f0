"""Fidelity metrics against numpy, scikit-image and a from-the-paper MS-SSIM in scipy."""

import numpy as np
import pytest
import dm_pix
from scipy import ndimage
from skimage.metrics import structural_similarity

from aigc_jax.evaluation import fidelity


def _image_pairs(height, width, channels, seed=0):
  """[4, H, W, C] pairs in [0, 1]: noise vs noisy copy, gradient vs noisy copy,
  checkerboard vs blurred copy, gradient vs its negative (anti-correlated)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
  gradient = np.repeat((0.2 + 0.6 * (0.5 * yy + 0.5 * xx))[..., None], channels, axis=-1)
  checker = np.repeat((((yy * height // 4) + (xx * width // 4)) % 2)[..., None], channels, -1)
  noise = rng.random((height, width, channels))
  a = np.stack([noise, gradient, checker, gradient])
  b = np.stack(
    [
      np.clip(noise + 0.2 * rng.standard_normal(noise.shape), 0, 1),
      np.clip(gradient + 0.05 * rng.standard_normal(gradient.shape), 0, 1),
      ndimage.gaussian_filter(checker, sigma=(1.0, 1.0, 0)),
      1.0 - gradient + 0.02 * rng.standard_normal(gradient.shape),
    ]
  )
  return a.astype(np.float32), b.astype(np.float32)


def test_mse_and_psnr_match_numpy():
  a, b = _image_pairs(20, 24, 3)
  expected_mse = np.mean((a.astype(np.float64) - b) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(fidelity.mse(a, b), expected_mse, rtol=1e-5)
  np.testing.assert_allclose(fidelity.psnr(a, b), 10 * np.log10(1.0 / expected_mse), rtol=1e-5)
  np.testing.assert_allclose(
    fidelity.psnr(255 * a, 255 * b, max_val=255.0),
    10 * np.log10(255.0**2 / (255.0**2 * expected_mse)),
    rtol=1e-4,
  )
  assert np.all(np.isinf(fidelity.psnr(a, a)))


@pytest.mark.parametrize("channels,max_val", [(1, 1.0), (3, 1.0), (3, 255.0)])
def test_ssim_matches_scikit_image(channels, max_val):
  a, b = _image_pairs(32, 27, channels)
  a, b = a * max_val, b * max_val
  ours = np.asarray(fidelity.ssim(a, b, max_val=max_val))
  expected = np.array(
    [
      structural_similarity(
        x.astype(np.float64),
        y.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=max_val,
        channel_axis=-1,
      )
      for x, y in zip(a, b)
    ]
  )
  print(
    f"ssim C={channels} max_val={max_val}: max |ours - skimage| = "
    f"{np.abs(ours - expected).max():.2e}"
  )
  np.testing.assert_allclose(ours, expected, atol=1e-4)
  assert expected.min() < 0 < 0.8 < expected.max()  # the cases span a wide range
  np.testing.assert_allclose(fidelity.ssim(a, a, max_val=max_val), 1.0, atol=1e-6)


@pytest.mark.parametrize("shape", [(64, 28, 28, 1), (5, 31, 40, 3)])
def test_ssim_matches_dm_pix(shape):
  # The banded-matrix blur must give dm_pix's values (its separable 1-D convolutions, run op
  # by op), on noisy pairs, identical pairs and unrelated pairs.
  rng = np.random.default_rng(1)
  a = rng.random(shape, dtype=np.float32)
  b = np.clip(a + 0.15 * rng.standard_normal(shape, dtype=np.float32), 0, 1)
  c = rng.random(shape, dtype=np.float32)
  for x, y in [(a, b), (a, a), (a, c)]:
    np.testing.assert_allclose(fidelity.ssim(x, y), dm_pix.ssim(x, y), rtol=0, atol=2e-6)


def test_ssim_rejects_images_smaller_than_the_window():
  a = np.zeros((1, 8, 8, 1), np.float32)
  with pytest.raises(ValueError, match="at least 11"):
    fidelity.ssim(a, a)


# ---- MS-SSIM reference: Wang et al. (2003) written directly in float64 numpy/scipy. -------

# Wang, Simoncelli & Bovik (2003), "Multi-scale structural similarity for image quality
# assessment", Table 1: the exponents of scales 1 (finest) to 5, copied from the paper.
PAPER_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def test_ms_ssim_weights_are_the_papers():
  assert fidelity.MS_SSIM_WEIGHTS == PAPER_MS_SSIM_WEIGHTS


def _reference_ssim_terms(x, y, max_val, sigma, radius):
  """Per-channel valid-window means of cs and of l*cs for 2-D images x, y (float64)."""

  def blur(z):
    # truncate chosen so that scipy's kernel radius int(truncate * sigma + 0.5) == radius.
    filtered = ndimage.gaussian_filter(z, sigma=sigma, truncate=radius / sigma)
    return filtered[radius:-radius, radius:-radius]  # keep only full windows

  mu_x, mu_y = blur(x), blur(y)
  var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
  cov = blur(x * y) - mu_x * mu_y
  c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
  luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
  cs = (2 * cov + c2) / (var_x + var_y + c2)
  return cs.mean(), (luminance * cs).mean()


def _reference_ms_ssim(x, y, weights, max_val=1.0, sigma=1.5, radius=5):
  """x, y: [H, W, C]. Paper's product over scales; 2x2 block means between scales."""
  per_channel = []
  for c in range(x.shape[-1]):
    u, v = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
    score = 1.0
    for scale, weight in enumerate(weights):
      if scale:
        h, w = u.shape[0] // 2 * 2, u.shape[1] // 2 * 2
        u = u[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        v = v[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
      cs, full = _reference_ssim_terms(u, v, max_val, sigma, radius)
      factor = cs if scale < len(weights) - 1 else full
      score *= max(factor, 0.0) ** weight
    per_channel.append(score)
  return np.mean(per_channel)


def test_reference_ms_ssim_single_scale_is_scikit_image_ssim():
  a, b = _image_pairs(30, 30, 1)
  for x, y in zip(a, b):
    expected = structural_similarity(
      x[..., 0].astype(np.float64),
      y[..., 0].astype(np.float64),
      gaussian_weights=True,
      sigma=1.5,
      use_sample_covariance=False,
      data_range=1.0,
    )
    assert abs(_reference_ms_ssim(x, y, (1.0,)) - max(expected, 0.0)) < 1e-12


def test_ms_ssim_matches_reference_implementation():
  # 190 x 181: odd sizes at several scales exercise the dropped last row/column.
  a, b = _image_pairs(190, 181, 2)
  ours = np.asarray(fidelity.ms_ssim(a, b))
  expected = np.array([_reference_ms_ssim(x, y, PAPER_MS_SSIM_WEIGHTS) for x, y in zip(a, b)])
  print(
    f"ms_ssim 5 scales: ours {ours}, reference {expected}, "
    f"max diff {np.abs(ours - expected).max():.2e}"
  )
  np.testing.assert_allclose(ours, expected, atol=1e-4)
  assert expected[-1] == 0.0  # the anti-correlated pair is clipped to 0
  assert 0.05 < expected[:3].min() and expected[:3].max() < 0.999
  np.testing.assert_allclose(fidelity.ms_ssim(a, a), 1.0, atol=1e-5)


def test_ms_ssim_on_small_images_needs_an_explicit_choice():
  a, b = _image_pairs(28, 28, 1)
  with pytest.raises(ValueError, match="at least 176"):
    fidelity.ms_ssim(a, b)
  assert fidelity.ms_ssim_min_size(7, 3) == 28
  weights = fidelity.ms_ssim_weights(3)
  assert abs(sum(weights) - 1.0) < 1e-12
  np.testing.assert_allclose(
    np.array(weights) / np.array(PAPER_MS_SSIM_WEIGHTS[:3]), 1.0 / sum(PAPER_MS_SSIM_WEIGHTS[:3])
  )
  ours = np.asarray(fidelity.ms_ssim(a, b, weights=weights, filter_size=7))
  expected = np.array([_reference_ms_ssim(x, y, weights, radius=3) for x, y in zip(a, b)])
  print(f"ms_ssim 28x28, 7-tap, 3 scales: max diff {np.abs(ours - expected).max():.2e}")
  np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_single_scale_ms_ssim_is_ssim():
  a, b = _image_pairs(24, 24, 3)
  np.testing.assert_allclose(
    fidelity.ms_ssim(a, b, weights=(1.0,)), np.maximum(fidelity.ssim(a, b), 0.0), atol=1e-6
  )
