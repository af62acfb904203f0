"""A transposed convolution whose gradients take the fast convolution paths of XLA:CPU.

`ConvTranspose` is a drop-in for `flax.linen.ConvTranspose`: same attributes, parameter
names, shapes and initialisation (its class name is the same too, so auto-named submodules
and checkpoints do not change), and a forward pass that is the same `lax.conv_transpose`, so
outputs are bit-identical. Only the backward pass differs.

Why: autodiff of `lax.conv_transpose` makes its kernel gradient a convolution with a dilated,
reversed window, which no CPU library path takes; XLA:CPU runs it in generic loop code at
about 10 GFLOP/s against 200-400 for the other convolutions, and it was two thirds of the
`dcgan28` train step. The backward here uses the adjoint identity instead. A transposed
convolution with stride s, kernel k and padding (pa, pb) of the stride-1 conv over the
s-dilated input is the adjoint of the ordinary stride-s convolution

    conv(u, w) = conv_general_dilated(u, w, strides=s, padding=(K-1-pa, K-1-pb)),
    with w = flip_swap(k) (spatial axes reversed, in/out channels swapped),

so for y = conv_transpose(x, k) with output cotangent dy:
    dx = conv(dy, flip_swap(k))                       (a plain strided convolution),
    dk = flip_swap(d/dw <conv(dy, w), x>)              (that convolution's kernel gradient,
                                                        with dy as its input, x its cotangent).
Both are ops XLA:CPU sends to its fast library kernels.

Supported: any spatial rank (channels-last), strides, 'SAME' / 'VALID' / explicit padding,
masks, dtypes and precision. Anything else (`kernel_dilation` > 1, `transpose_kernel`,
'CIRCULAR' padding, `preferred_element_type`) falls back to flax's plain op. Reverse-mode
derivatives of any order work (the backward pass is itself differentiable); forward mode
(`jax.jvp`, `jax.jacfwd`) does not, as for every `jax.custom_vjp`.

`implementation="matmul"` computes the same values as one matrix product and a scatter of
its taps instead (`conv_matmul.conv_transpose`, plain autodiff): the fast form inside
`lax.scan` and under `vmap` over seeds on XLA:CPU, where convolutions take slow paths.
"""

import functools
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.linear import canonicalize_padding

from aigc_jax.models import conv_matmul

_SPATIAL = "HWD"  # Spatial dimension letters of the channels-last layouts (1-3 dims).


def _dimension_numbers(num_spatial: int) -> Tuple[str, str, str]:
  spatial = _SPATIAL[:num_spatial]
  return ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")


def transposed_conv_padding(kernel_size: int, stride: int, padding) -> Tuple[int, int]:
  """(before, after) padding of the s-dilated input, exactly as `lax.conv_transpose` sets it.

  `padding` is "SAME", "VALID" or an explicit (before, after) pair, which (as in
  `lax.conv_transpose` without `use_consistent_padding`, and in flax) is used as it is.
  """
  if isinstance(padding, str):
    if padding == "SAME":
      pad_len = kernel_size + stride - 2
      before = kernel_size - 1 if stride > kernel_size - 1 else int(np.ceil(pad_len / 2))
    elif padding == "VALID":
      pad_len = kernel_size + stride - 2 + max(kernel_size - stride, 0)
      before = kernel_size - 1
    else:
      raise ValueError(f"unsupported padding {padding!r}")
    return before, pad_len - before
  before, after = padding
  return int(before), int(after)


def _flip_swap(kernel: jax.Array) -> jax.Array:
  """`[*spatial, I, O] -> [*spatial reversed, O, I]`: the kernel of the adjoint convolution."""
  spatial_axes = tuple(range(kernel.ndim - 2))
  return jnp.swapaxes(jnp.flip(kernel, spatial_axes), -1, -2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_transpose(
  inputs: jax.Array, kernel: jax.Array, strides: Tuple[int, ...], padding, precision
) -> jax.Array:
  """`lax.conv_transpose(inputs, kernel, strides, padding)` (channels-last, no dilation).

  Args:
    inputs: `[B, *spatial, C_in]`.
    kernel: `[*kernel_size, C_in, C_out]` (not transposed, as in flax).
    strides: one int per spatial dimension.
    padding: "SAME", "VALID", or a tuple of (before, after) pairs, one per spatial dim.
    precision: a `lax.Precision` (or None) for every convolution, forward and backward.

  Returns:
    `[B, *spatial_out, C_out]`, identical to `lax.conv_transpose`; gradients by the adjoint
    identity of the module docstring.
  """
  return _forward(inputs, kernel, strides, padding, precision)


def _forward(inputs, kernel, strides, padding, precision):
  return jax.lax.conv_transpose(
    inputs,
    kernel,
    strides,
    padding,
    precision=precision,
    dimension_numbers=_dimension_numbers(kernel.ndim - 2),
  )


def _conv_transpose_fwd(inputs, kernel, strides, padding, precision):
  return _forward(inputs, kernel, strides, padding, precision), (inputs, kernel)


def _conv_transpose_bwd(strides, padding, precision, residuals, output_grad):
  inputs, kernel = residuals
  kernel_size = kernel.shape[:-2]
  paddings = [padding] * len(strides) if isinstance(padding, str) else padding
  adjoint_padding = []
  for size, stride, pad in zip(kernel_size, strides, paddings):
    before, after = transposed_conv_padding(size, stride, pad)
    adjoint_padding.append((size - 1 - before, size - 1 - after))

  def adjoint(cotangent_like, adjoint_kernel):  # The ordinary strided convolution.
    return jax.lax.conv_general_dilated(
      cotangent_like,
      adjoint_kernel,
      tuple(strides),
      adjoint_padding,
      precision=precision,
      dimension_numbers=_dimension_numbers(kernel.ndim - 2),
    )

  input_grad, adjoint_vjp = jax.vjp(adjoint, output_grad, _flip_swap(kernel))
  # input_grad is adjoint(dy, flip_swap(k)); its shape equals the input's by construction.
  _, adjoint_kernel_grad = adjoint_vjp(inputs)
  return input_grad.astype(inputs.dtype), _flip_swap(adjoint_kernel_grad).astype(kernel.dtype)


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


class ConvTranspose(nn.ConvTranspose):
  """`flax.linen.ConvTranspose` with the fast backward pass of `conv_transpose`.

  Same attributes, parameters and forward values as flax's module (see the module
  docstring for what falls back to flax's plain op). `implementation`: "xla" (the
  convolution ops above) or "matmul" (`conv_matmul.conv_transpose`: a GEMM and a scatter).
  """

  implementation: str = "xla"

  def uses_fast_backward(self) -> bool:
    """Whether this configuration takes the custom-VJP path (False: flax's plain op)."""
    dilation = self.kernel_dilation
    dilated = dilation is not None and any(
      d != 1 for d in ((dilation,) if isinstance(dilation, int) else dilation)
    )
    return not (
      dilated
      or self.transpose_kernel
      or self.preferred_element_type is not None
      or (isinstance(self.padding, str) and self.padding == "CIRCULAR")
    )

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if not self.uses_fast_backward():
      return super().__call__(inputs)
    kernel_size = (
      (self.kernel_size,) if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
    )
    num_spatial = len(kernel_size)
    strides = self.strides if self.strides is not None else 1
    strides = (strides,) * num_spatial if isinstance(strides, int) else tuple(strides)

    # As flax: all leading batch dimensions become one.
    batch_shape = inputs.shape[: inputs.ndim - (num_spatial + 1)]
    if len(batch_shape) != 1:
      inputs = jnp.reshape(inputs, (-1,) + inputs.shape[len(batch_shape) :])

    kernel_shape = kernel_size + (inputs.shape[-1], self.features)
    if self.mask is not None and self.mask.shape != kernel_shape:
      raise ValueError(
        "Mask needs to have the same shape as weights. "
        f"Shapes are: {self.mask.shape}, {kernel_shape}"
      )
    kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)
    if self.mask is not None:
      kernel *= self.mask
    bias = (
      self.param("bias", self.bias_init, (self.features,), self.param_dtype)
      if self.use_bias
      else None
    )
    inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)

    padding = canonicalize_padding(self.padding, num_spatial)
    if not isinstance(padding, str):
      padding = tuple(tuple(int(p) for p in pair) for pair in padding)
    if self.implementation == "matmul":
      pairs = [padding] * num_spatial if isinstance(padding, str) else padding
      dilated_padding = tuple(
        transposed_conv_padding(size, stride, pad)
        for size, stride, pad in zip(kernel_size, strides, pairs)
      )
      y = conv_matmul.conv_transpose(inputs, kernel, strides, dilated_padding, self.precision)
    elif self.implementation == "xla":
      y = conv_transpose(inputs, kernel, strides, padding, self.precision)
    else:
      raise ValueError(f"implementation must be 'xla' or 'matmul', got {self.implementation!r}")

    if bias is not None:
      y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    if len(batch_shape) != 1:
      y = jnp.reshape(y, batch_shape + y.shape[1:])
    return y
