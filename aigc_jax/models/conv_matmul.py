"""Convolutions written as contiguous slices and one matrix product, for XLA:CPU's matmul path.

`conv_general_dilated` has `lax.conv_general_dilated`'s signature (flax's `nn.Conv` takes it
as its `conv_general_dilated` attribute, so the module, its parameter names, shapes and
initialisation are flax's own) and `conv_transpose` is `lax.conv_transpose` without
dilation (`conv_transpose.ConvTranspose` calls it with `implementation="matmul"`).

Why: XLA:CPU runs a convolution inside a `while` loop (what `lax.scan` compiles to), or
vmapped over seeds (a grouped convolution), in slow generic code; a matrix product it runs
on its library path in both places. Per spatial dimension, with stride s, kernel K and
Q = ceil(K / s) (the kernel padded with zero taps to Q * s), a tap k is k = s * q + r:

- convolution: y[o] = sum_k x_pad[o * s + k] w[k] = sum_q sum_r x_pad[s * (o + q) + r] w[s q + r].
  Space to depth (x_pad as blocks of s, the offset r joining the channels) makes it a
  stride-1 convolution with Q taps: Q contiguous slices concatenated along the channels
  (patches `[B, *out, prod(Q) * prod(s) * C]`) times the kernel as `[prod(Q * s) * C, F]`.
- transposed convolution (the stride-1 convolution over the s-dilated input padded by
  (pa, pb), as `lax.conv_transpose` without kernel transposition): its output phase
  p = s - 1 - r is a stride-1 convolution with Q taps of the input padded by Q - 1, so one
  GEMM of Q contiguous slices by the kernel as `[prod(Q) * C, prod(s) * F]` gives every
  phase; depth to space interleaves them, and a pad (negative: a crop) sets (pa, pb).

No multiply by an inserted zero, and the GEMMs' FLOPs are those of the convolutions (plus
the zero taps when s does not divide K). Autodiff turns slices into pads and reshapes into
reshapes, so the gradients stay on the same path; under `vmap` the seed axis becomes a
batch dimension of the GEMM. Values equal `lax`'s up to float rounding (the sums run in
another order); the tests check values and gradients in float32 and float64.

`resolve_conv_impl` turns the config knob `model.conv_impl` ("xla", "matmul", "auto") into
"xla" or "matmul": "auto" is "matmul" on a CPU backend and "xla" elsewhere, where the
convolution libraries are fast.
"""

import itertools
import math
from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("xla", "matmul", "auto")


def resolve_conv_impl(conv_impl: str) -> str:
  """`"xla"` or `"matmul"` for the knob's value; "auto" is "matmul" on CPU only."""
  if conv_impl == "auto":
    return "matmul" if jax.default_backend() == "cpu" else "xla"
  if conv_impl not in ("xla", "matmul"):
    raise ValueError(f"conv_impl must be one of {', '.join(CONV_IMPLS)}, got {conv_impl!r}")
  return conv_impl


def _channels_last(dimension_numbers, ndim: int) -> bool:
  """Whether `dimension_numbers` is flax's layout: `[N, *spatial, C]`, kernel `[*spatial, I, O]`."""
  if dimension_numbers is None:
    return False
  spatial = tuple(range(1, ndim - 1))
  expected = lax.ConvDimensionNumbers(
    lhs_spec=(0, ndim - 1) + spatial,
    rhs_spec=(ndim - 1, ndim - 2) + tuple(range(ndim - 2)),
    out_spec=(0, ndim - 1) + spatial,
  )
  return lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers) == expected


def _all_ones(values) -> bool:
  return values is None or all(v == 1 for v in values)


def conv_general_dilated(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision=None,
  preferred_element_type=None,
) -> jax.Array:
  """`lax.conv_general_dilated`, as slices and one GEMM for flax's channels-last layout.

  Args:
    lhs: `[B, *spatial, C_in]`; rhs: `[*kernel_size, C_in, C_out]`.
    window_strides: one int per spatial dimension.
    padding: "SAME", "VALID" or one (before, after) pair per spatial dimension.
  Returns:
    `[B, *spatial_out, C_out]`. Dilations, feature or batch groups and other layouts are
    passed to `lax.conv_general_dilated` unchanged.
  """
  num_spatial = lhs.ndim - 2
  if not (
    _channels_last(dimension_numbers, lhs.ndim)
    and _all_ones(lhs_dilation)
    and _all_ones(rhs_dilation)
    and feature_group_count == 1
    and batch_group_count == 1
  ):
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      batch_group_count,
      precision=precision,
      preferred_element_type=preferred_element_type,
    )
  kernel_size = rhs.shape[:num_spatial]
  strides = tuple(int(v) for v in window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:-1], kernel_size, strides, padding)
  taps = tuple(-(-k // s) for k, s in zip(kernel_size, strides))  # Q = ceil(K / s).
  pad_config = [(0, 0, 0)]
  blocks = []  # T: the padded side in blocks of s, Q - 1 more than the output side.
  for d in range(num_spatial):
    before, after = (int(p) for p in padding[d])
    padded_size = lhs.shape[1 + d] + before + after
    out_size = (padded_size - kernel_size[d]) // strides[d] + 1
    blocks.append(out_size + taps[d] - 1)
    # Zeros (or a crop of unread rows) up to whole blocks of s.
    pad_config.append((before, after + strides[d] * blocks[-1] - padded_size, 0))
  padded = lax.pad(lhs, jnp.zeros((), lhs.dtype), pad_config + [(0, 0, 0)])
  # Space to depth: [B, *T * s, C] -> [B, *T, prod(s) * C], offset within a block major.
  split = padded.reshape(
    (lhs.shape[0],) + sum(((t, s) for t, s in zip(blocks, strides)), ()) + (lhs.shape[-1],)
  )
  order = (
    (0,)
    + tuple(1 + 2 * d for d in range(num_spatial))
    + tuple(2 + 2 * d for d in range(num_spatial))
  )
  depth = split.transpose(order + (split.ndim - 1,)).reshape(
    (lhs.shape[0],) + tuple(blocks) + (-1,)
  )
  # The kernel in the same order: taps k = s * q + r (zero taps up to Q * s), rows (q, r, c).
  kernel = _pad_kernel(rhs, taps, strides).reshape(
    sum(((q, s) for q, s in zip(taps, strides)), ()) + rhs.shape[-2:]
  )
  kernel = kernel.transpose(
    tuple(2 * d for d in range(num_spatial))
    + tuple(1 + 2 * d for d in range(num_spatial))
    + (2 * num_spatial, 2 * num_spatial + 1)
  )
  return _matmul(
    _patches(depth, taps), kernel.reshape((-1, rhs.shape[-1])), precision, preferred_element_type
  )


def _pad_kernel(kernel: jax.Array, taps: Sequence[int], strides: Sequence[int]) -> jax.Array:
  """`[*K, I, O]` with zero taps appended up to `[*(Q * s), I, O]`."""
  config = [(0, q * s - k, 0) for k, q, s in zip(kernel.shape, taps, strides)]
  return lax.pad(kernel, jnp.zeros((), kernel.dtype), config + [(0, 0, 0)] * 2)


def _patches(x: jax.Array, taps: Sequence[int]) -> jax.Array:
  """`[B, *S, C] -> [B, *(S - Q + 1), prod(Q) * C]`: the stride-1 windows of Q taps, tap-major."""
  num_spatial = x.ndim - 2
  out = tuple(x.shape[1 + d] - taps[d] + 1 for d in range(num_spatial))
  pieces = [
    lax.slice(
      x,
      (0,) + offset + (0,),
      (x.shape[0],) + tuple(o + n for o, n in zip(offset, out)) + (x.shape[-1],),
    )
    for offset in itertools.product(*(range(q) for q in taps))
  ]
  return pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces, axis=-1)


def _matmul(patches, kernel, precision, preferred_element_type=None):
  """`[..., K] x [K, N] -> [..., N]`: one GEMM."""
  return lax.dot_general(
    patches,
    kernel,
    (((patches.ndim - 1,), (0,)), ((), ())),
    precision=precision,
    preferred_element_type=preferred_element_type,
  )


def conv_transpose(
  inputs: jax.Array,
  kernel: jax.Array,
  strides: Tuple[int, ...],
  padding: Sequence[Tuple[int, int]],
  precision=None,
) -> jax.Array:
  """`lax.conv_transpose(inputs, kernel, strides, padding)` (channels-last, no dilation).

  Args:
    inputs: `[B, *spatial, C_in]`; kernel: `[*kernel_size, C_in, C_out]` (not transposed).
    strides: one int per spatial dimension.
    padding: one (before, after) pair per spatial dimension, of the s-dilated input, as
      `conv_transpose.transposed_conv_padding` gives for "SAME" / "VALID".
  Returns:
    `[B, *spatial_out, C_out]`, spatial_out = (in - 1) * s + 1 + before + after - k + 1.
  """
  num_spatial = inputs.ndim - 2
  kernel_size = kernel.shape[:num_spatial]
  strides = tuple(int(v) for v in strides)
  taps = tuple(-(-k // s) for k, s in zip(kernel_size, strides))
  batch, channels_out = inputs.shape[0], kernel.shape[-1]
  padded = lax.pad(
    inputs,
    jnp.zeros((), inputs.dtype),
    [(0, 0, 0)] + [(q - 1, q - 1, 0) for q in taps] + [(0, 0, 0)],
  )
  blocks = tuple(inputs.shape[1 + d] + taps[d] - 1 for d in range(num_spatial))
  # Kernel taps k = s * q + r; output phase p = s - 1 - r: rows (q, c_in), columns (p, c_out).
  split = _pad_kernel(kernel, taps, strides).reshape(
    sum(((q, s) for q, s in zip(taps, strides)), ()) + kernel.shape[-2:]
  )
  split = jnp.flip(split, tuple(1 + 2 * d for d in range(num_spatial)))
  order = (
    tuple(2 * d for d in range(num_spatial))
    + (2 * num_spatial,)
    + tuple(1 + 2 * d for d in range(num_spatial))
    + (2 * num_spatial + 1,)
  )
  phase_kernel = split.transpose(order).reshape((math.prod(taps) * kernel.shape[-2], -1))
  phases = _matmul(_patches(padded, taps), phase_kernel, precision)  # [B, *J, prod(s) * F]
  # Depth to space: [B, *J, *s, F] -> [B, J_0, s_0, J_1, s_1, ..., F] -> [B, *(J * s), F].
  phases = phases.reshape((batch,) + blocks + strides + (channels_out,))
  interleave = (0,) + sum(((1 + d, 1 + num_spatial + d) for d in range(num_spatial)), ())
  full = phases.transpose(interleave + (phases.ndim - 1,)).reshape(
    (batch,) + tuple(j * s for j, s in zip(blocks, strides)) + (channels_out,)
  )
  # `full` is the transposed convolution with padding Q * s - 1 on both sides; crop to (pa, pb).
  crop = [(0, 0, 0)]
  for d in range(num_spatial):
    before, after = padding[d]
    out_size = (inputs.shape[1 + d] - 1) * strides[d] + before + after - kernel_size[d] + 2
    low = before - (taps[d] * strides[d] - 1)
    crop.append((low, out_size - full.shape[1 + d] - low, 0))
  return lax.pad(full, jnp.zeros((), full.dtype), crop + [(0, 0, 0)])
