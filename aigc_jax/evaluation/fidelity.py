"""Per-image fidelity metrics: MSE, PSNR, SSIM and MS-SSIM.

Every function takes two image batches `a, b: [B, H, W, C]` float with values in
[0, max_val] and returns one number per image, `[B]`. All are pure and jittable
(`max_val`, `filter_size`, `filter_sigma`, `k1`, `k2` and `weights` are Python constants).
Colour images are scored per channel and the channels averaged, as dm-pix and
tf.image do; SSIM is only defined on one channel.
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Wang, Simoncelli & Bovik (2003), Table 1: exponents of scales 1 (finest) .. 5 (coarsest).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _as_float_images(a, b):
  a = jnp.asarray(a)
  b = jnp.asarray(b)
  if a.ndim != 4 or a.shape != b.shape:
    raise ValueError(
      f"expected two image batches [B, H, W, C] of one shape, got {a.shape} and {b.shape}"
    )
  dtype = jnp.result_type(a.dtype, b.dtype, jnp.float32)
  return a.astype(dtype), b.astype(dtype)


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean squared error per image: mean over H, W, C of (a - b)^2.

  Args:
    a, b: [B, H, W, C] images.

  Returns:
    [B] float.
  """
  a, b = _as_float_images(a, b)
  return jnp.mean(jnp.square(a - b), axis=(1, 2, 3))


def psnr(a: jax.Array, b: jax.Array, max_val: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio per image, in dB: 10 * log10(max_val^2 / mse(a, b)).

  Args:
    a, b: [B, H, W, C] images in [0, max_val].
    max_val: the largest value a pixel can take (1.0 for [0, 1], 255 for 8-bit).

  Returns:
    [B] float; +inf where the two images are identical.
  """
  return 10.0 * jnp.log10(max_val**2 / mse(a, b))


def ssim(
  a: jax.Array,
  b: jax.Array,
  max_val: float = 1.0,
  *,
  filter_size: int = 11,
  filter_sigma: float = 1.5,
  k1: float = 0.01,
  k2: float = 0.03,
) -> jax.Array:
  """Structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004, IEEE TIP 13(4)) per image.

  SSIM(x, y) = mean over valid window positions of
      (2 mu_x mu_y + C1) (2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (sigma_x^2 + sigma_y^2 + C2)),
  with C1 = (k1 max_val)^2, C2 = (k2 max_val)^2 and local statistics weighted by a
  `filter_size`-tap Gaussian of std `filter_sigma` (defaults: the paper's 11, 1.5, 0.01,
  0.03). Only windows lying wholly inside the image count ("valid"), which equals
  scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=max_val)` and `dm_pix.ssim` (both tested). Jitted;
  10,000 28x28 images take a fraction of a second on a CPU.

  Args:
    a, b: [B, H, W, C] images in [0, max_val], H and W at least `filter_size`.
    max_val: the dynamic range of the pixels (1.0 for [0, 1]).

  Returns:
    [B] float in [-1, 1]; 1 for identical images.
  """
  a, b = _as_float_images(a, b)
  _check_window_fits(a.shape, filter_size, num_scales=1)
  return _ssim(a, b, max_val, filter_size, filter_sigma, k1, k2)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def _ssim(a, b, max_val, filter_size, filter_sigma, k1, k2):
  luminance, contrast_structure = _ssim_terms(a, b, max_val, filter_size, filter_sigma, k1, k2)
  return jnp.mean(luminance * contrast_structure, axis=(1, 2, 3))


def ms_ssim_weights(num_scales: int) -> tuple[float, ...]:
  """The first `num_scales` MS-SSIM weights of Wang et al. (2003), rescaled to sum to 1.

  For images too small for five scales: `ms_ssim(a, b, weights=ms_ssim_weights(3))`
  keeps the three finest scales with the paper's relative weights. Scores made with
  different weights are different metrics; report which was used.
  """
  if not 1 <= num_scales <= len(MS_SSIM_WEIGHTS):
    raise ValueError(f"num_scales must be in [1, {len(MS_SSIM_WEIGHTS)}], got {num_scales}")
  kept = MS_SSIM_WEIGHTS[:num_scales]
  return tuple(w / sum(kept) for w in kept)


def ms_ssim_min_size(filter_size: int = 11, num_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
  """Smallest H and W for which `ms_ssim` works: filter_size * 2^(num_scales - 1) (176 by default)."""
  return filter_size * 2 ** (num_scales - 1)


def ms_ssim(
  a: jax.Array,
  b: jax.Array,
  max_val: float = 1.0,
  *,
  weights: Sequence[float] = MS_SSIM_WEIGHTS,
  filter_size: int = 11,
  filter_sigma: float = 1.5,
  k1: float = 0.01,
  k2: float = 0.03,
) -> jax.Array:
  """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003, Asilomar) per image.

  MS-SSIM(x, y) = l_M^{w_M} * prod_{j=1..M} cs_j^{w_j}, i.e.
      prod_{j<M} cs_j^{w_j} * ssim_M^{w_M},
  where at scale j (j = 1 the full image) cs_j is the mean over valid windows of
  (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2) and ssim_M, at the coarsest scale, is the
  mean of the full SSIM map (luminance included), both with the Gaussian window of `ssim`.
  Between scales both images are downsampled by 2x2 average pooling with stride 2 (the
  reference MATLAB code's 2x2 mean filter followed by taking every second pixel; an odd last
  row or column is dropped). Defaults: M = 5, weights (0.0448, 0.2856, 0.3001, 0.2363,
  0.1333) as in the paper (they sum to 1.0001 and are used as they are).
  As in tf.image.ssim_multiscale, negative cs_j or ssim_M are clipped to 0 before the power
  (a negative base has no real fractional power), so anti-correlated images score 0.

  Small images: every scale needs the window to fit, so H and W must be at least
  `filter_size * 2^(M - 1)` (176 for the defaults; see `ms_ssim_min_size`); smaller inputs
  raise a ValueError naming that size rather than silently changing the metric. For small
  images (e.g. 28x28 digits) choose explicitly: fewer scales with renormalised weights,
  `weights=ms_ssim_weights(2)`, and/or a smaller window, e.g. `filter_size=7,
  weights=ms_ssim_weights(3)` for 28x28 (28 -> 14 -> 7).

  Args:
    a, b: [B, H, W, C] images in [0, max_val].
    max_val: the dynamic range of the pixels (1.0 for [0, 1]).
    weights: one exponent per scale, finest first; len(weights) is the number of scales.

  Returns:
    [B] float in [0, 1] (channel-averaged for C > 1); 1 for identical images.
  """
  a, b = _as_float_images(a, b)
  weights = tuple(float(w) for w in weights)
  _check_window_fits(a.shape, filter_size, num_scales=len(weights))
  return _ms_ssim(a, b, max_val, weights, filter_size, filter_sigma, k1, k2)


def _check_window_fits(shape, filter_size, num_scales):
  smallest = min(shape[1], shape[2])
  needed = ms_ssim_min_size(filter_size, num_scales)
  if smallest < needed:
    what = "SSIM" if num_scales == 1 else f"MS-SSIM with {num_scales} scales"
    raise ValueError(
      f"{what} with a {filter_size}-tap window needs H and W of at least {needed}, got "
      f"{shape[1]}x{shape[2]}; pass fewer scales (weights=ms_ssim_weights(n)) or a smaller "
      "filter_size"
    )


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def _ms_ssim(a, b, max_val, weights, filter_size, filter_sigma, k1, k2):
  factors = []
  for scale in range(len(weights)):
    if scale > 0:
      a, b = _downsample_2x(a), _downsample_2x(b)
    luminance, contrast_structure = _ssim_terms(a, b, max_val, filter_size, filter_sigma, k1, k2)
    if scale < len(weights) - 1:
      factors.append(jnp.mean(contrast_structure, axis=(2, 3)))  # [B, C]
    else:
      factors.append(jnp.mean(luminance * contrast_structure, axis=(2, 3)))
  factors = jnp.maximum(jnp.stack(factors, axis=-1), 0.0)  # [B, C, M]
  per_channel = jnp.prod(factors ** jnp.asarray(weights, factors.dtype), axis=-1)
  return jnp.mean(per_channel, axis=-1)


def _downsample_2x(x):
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  x = x[:, :h, :w, :]
  return 0.25 * (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2])


def _gaussian_blur_valid(x, filter_size, filter_sigma):
  """Separable Gaussian filter of [..., H, W, C] over H and W, keeping only full windows.

  Returns the blurred planes as [..., C, W', H'] (W' = W - filter_size + 1, likewise H'):
  channels first and the spatial axes swapped, which the SSIM maps (averaged over the
  spatial axes) do not mind. Each pass is one matrix product with a banded [n, n'] matrix
  of the taps: on a CPU that is an order of magnitude faster than a convolution with a
  single-channel 11-tap window.
  """
  offsets = np.arange(filter_size) - (filter_size - 1) / 2
  taps = np.exp(-0.5 * np.square(offsets / filter_sigma))
  taps = taps / np.sum(taps)

  def banded(size):  # [size, size - filter_size + 1]: column i holds the taps at i..i+f-1.
    matrix = np.zeros((size, size - filter_size + 1))
    for i in range(matrix.shape[1]):
      matrix[i : i + filter_size, i] = taps
    return jnp.asarray(matrix, x.dtype)

  x = jnp.moveaxis(x, -1, -3)  # [..., C, H, W]
  x = jnp.matmul(x, banded(x.shape[-1]), precision=jax.lax.Precision.HIGHEST)  # [..., C, H, W']
  x = jnp.swapaxes(x, -1, -2)  # [..., C, W', H]
  return jnp.matmul(x, banded(x.shape[-1]), precision=jax.lax.Precision.HIGHEST)


def _ssim_terms(a, b, max_val, filter_size, filter_sigma, k1, k2):
  """Luminance and contrast-structure maps [B, C, W', H'] over valid window positions."""
  # One blur (one matrix product per pass) of the five planes the statistics need.
  mu_a, mu_b, mean_aa, mean_bb, mean_ab = _gaussian_blur_valid(
    jnp.stack([a, b, a * a, b * b, a * b]), filter_size, filter_sigma
  )
  # The barrier keeps the products apart from the subtractions: fused, the compiler is free
  # to contract some of them into fused multiply-adds and not others, and then var_a and cov
  # of identical images differ by rounding that cancellation magnifies (SSIM(x, x) came out
  # 1 - 3e-6 instead of 1).
  mu_aa, mu_bb, mu_ab = jax.lax.optimization_barrier((mu_a * mu_a, mu_b * mu_b, mu_a * mu_b))
  var_a = mean_aa - mu_aa
  var_b = mean_bb - mu_bb
  cov = mean_ab - mu_ab
  # The same guards as dm_pix.ssim: rounding can make a variance slightly negative or a
  # covariance break Cauchy-Schwarz.
  var_floor = jnp.finfo(jnp.float32).eps ** 2
  var_a = jnp.maximum(var_a, var_floor)
  var_b = jnp.maximum(var_b, var_floor)
  cov = jnp.sign(cov) * jnp.minimum(jnp.sqrt(var_a * var_b), jnp.abs(cov))
  c1 = (k1 * max_val) ** 2
  c2 = (k2 * max_val) ** 2
  luminance = (2 * mu_ab + c1) / (mu_aa + mu_bb + c1)
  contrast_structure = (2 * cov + c2) / (var_a + var_b + c2)
  return luminance, contrast_structure
