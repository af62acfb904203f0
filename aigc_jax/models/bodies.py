"""Network bodies shared by every family: image -> vector encoders, vector -> image decoders.

An encoder body is the AE/VAE encoder and the GAN discriminator; a decoder body is the AE/VAE
decoder and the GAN generator. The config picks the body ("mlp" or "conv") by name.

Shapes: images are NHWC `[B, H, W, C]`; vectors are `[B, D]`. Decoders return
pre-activation outputs (logits or means); the family decides the output non-linearity.

BatchNorm (`norm="batch"`) averages its batch statistics over the named device axis
`batch_axis_name` when it is given, so a batch split over devices normalises exactly as the
whole batch would on one device.

Options every body takes (their defaults are flax's, so configs that do not set them keep
their parameters and numbers): `kernel_init` (a name in `KERNEL_INITS`), `bias_before_norm`
(False: the layers followed by BatchNorm have no bias, which BatchNorm's shift makes
redundant), `norm_momentum` and `norm_epsilon` of BatchNorm (bodies with a norm), `dtype`
(the compute dtype of activations and matrix products, e.g. bfloat16 on accelerators; None is
float32; parameters stay float32, BatchNorm statistics are computed in float32, and the body
returns float32, so losses are float32), and, for encoders, `spectral_norm` (every Dense / Conv weight divided by its
largest singular value, Miyato et al. 2018; the power-iteration vectors live in
`batch_stats`, advance one iteration per call with `train=True` and stay fixed otherwise).

The convolutional bodies also take `conv_impl` (`config.model.conv_impl`): "xla" (flax's
convolution ops, the default), "matmul" (the same layers, parameters and values computed
as strided slices and one matrix product, `conv_matmul`: the fast form on XLA:CPU inside
`lax.scan` and under `vmap` over seeds) or "auto" ("matmul" on a CPU backend, else "xla").
"""

import math
from typing import Any, Callable, ClassVar, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.models import conv_matmul
from aigc_jax.models.conv_transpose import ConvTranspose
from aigc_jax.registry import Registry, unknown_name_message

ACTIVATIONS = Registry[Callable]("activation")
ACTIVATIONS.register("relu")(nn.relu)
ACTIVATIONS.register("leaky_relu")(lambda x: nn.leaky_relu(x, negative_slope=0.2))
ACTIVATIONS.register("swish")(nn.swish)

NORMS = ("none", "batch")


def drawn_as_matrix(init: Callable) -> Callable:
  """`init` of a kernel `[..., in, out]`, drawn as the matrix `[prod(...) * in, out]` and reshaped.

  For an initialiser whose scale depends on the fan-in alone, or on nothing, the values are
  flax's own, bit for bit: the fan-in is the same, and jax numbers random elements by their
  flat index. XLA compiles the draw of a 4-D convolution kernel in about 1 s on a CPU and the
  matrix's in a quarter of that, a cost paid per kernel shape by every run and test.
  """

  def draw(key, shape, dtype=jnp.float32):
    return init(key, (math.prod(shape[:-1]), shape[-1]), dtype).reshape(shape)

  return draw


KERNEL_INITS = Registry[Callable]("kernel initialiser")
# flax's default (lecun_normal: fan-in scaled).
KERNEL_INITS.register("lecun_normal")(lambda: drawn_as_matrix(nn.initializers.lecun_normal()))
# N(0, 0.02^2): DCGAN (Radford et al. 2016), ALI and PacGAN (Lin et al. 2018).
KERNEL_INITS.register("normal_0.02")(lambda: drawn_as_matrix(nn.initializers.normal(stddev=0.02)))


class _Norm(nn.Module):
  """Identity or BatchNorm (by default PyTorch's: momentum 0.9 of the running mean, eps 1e-5)."""

  kind: str
  batch_axis_name: Optional[str]
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Optional[Any] = None

  @nn.compact
  def __call__(self, x, train: bool):
    if self.kind == "none":
      return x
    if self.kind == "batch":
      return nn.BatchNorm(
        use_running_average=not train,
        momentum=self.momentum,
        epsilon=self.epsilon,
        dtype=self.dtype,
        axis_name=self.batch_axis_name if train else None,
      )(x)
    raise UnknownNameError(unknown_name_message("norm", self.kind, NORMS))


def _norm(body: nn.Module) -> _Norm:
  return _Norm(
    body.norm, body.batch_axis_name, body.norm_momentum, body.norm_epsilon, dtype=body.dtype
  )


def _kernel_init(body: nn.Module):
  return KERNEL_INITS.get(body.kernel_init)()


def _hidden_bias(body: nn.Module) -> bool:
  """Whether the layers that feed `body.norm` have a bias (`bias_before_norm`)."""
  if not body.bias_before_norm and body.norm == "none":
    raise ConfigError(
      f"{type(body).__name__}: bias_before_norm=False drops the bias of layers followed by "
      "a norm, but norm is 'none'; set norm='batch' or bias_before_norm=True."
    )
  return body.bias_before_norm


def _apply(body: nn.Module, layer: nn.Module, x, train: bool):
  """`layer(x)`, spectrally normalised when the body asks for it (encoders only)."""
  if getattr(body, "spectral_norm", False):
    return nn.SpectralNorm(layer)(x, update_stats=train)
  return layer(x)


def _conv_impl(body: nn.Module) -> str:
  """`body.conv_impl` resolved to "xla" or "matmul" (an unknown name: one line, the choices)."""
  if body.conv_impl not in conv_matmul.CONV_IMPLS:
    raise UnknownNameError(
      unknown_name_message("convolution implementation", body.conv_impl, conv_matmul.CONV_IMPLS)
    )
  return conv_matmul.resolve_conv_impl(body.conv_impl)


def _float32(x):
  """A body's output in float32 whatever its compute dtype (a no-op for float32)."""
  return x.astype(jnp.float32)


def _dense_layers(body: nn.Module, x, train: bool):
  """[Dense(h) -> norm -> act] for each h in `body.widths`; call inside `body`'s compact method."""
  act = ACTIVATIONS.get(body.activation)
  for width in body.widths:
    dense = nn.Dense(
      width, use_bias=_hidden_bias(body), kernel_init=_kernel_init(body), dtype=body.dtype
    )
    x = act(_norm(body)(_apply(body, dense, x, train), train))
  return x


class MLPEncoder(nn.Module):
  """Flatten -> [Dense(h) -> norm -> act] * len(widths) -> Dense(out_features)."""

  # Its input is flattened first, so a label is joined as K more inputs, not K image channels.
  flattens_input: ClassVar[bool] = True
  out_features: int
  widths: Sequence[int] = (400,)
  activation: str = "relu"
  norm: str = "none"
  batch_axis_name: Optional[str] = None
  kernel_init: str = "lecun_normal"
  bias_before_norm: bool = True
  norm_momentum: float = 0.9
  norm_epsilon: float = 1e-5
  spectral_norm: bool = False
  dtype: Optional[Any] = None  # Compute dtype; None = float32 (see the module docstring).

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _dense_layers(self, x.reshape((x.shape[0], -1)), train)
    return _float32(
      _apply(
        self,
        nn.Dense(self.out_features, kernel_init=_kernel_init(self), dtype=self.dtype),
        x,
        train,
      )
    )


class MLPDecoder(nn.Module):
  """[Dense(h) -> norm -> act] * len(widths) -> Dense(prod(output_shape)) -> reshape.

  `output_shape` is (H, W, C) for images or (D,) for points.
  """

  output_shape: Tuple[int, ...]
  widths: Sequence[int] = (400,)
  activation: str = "relu"
  norm: str = "none"
  batch_axis_name: Optional[str] = None
  kernel_init: str = "lecun_normal"
  bias_before_norm: bool = True
  norm_momentum: float = 0.9
  norm_epsilon: float = 1e-5
  dtype: Optional[Any] = None  # Compute dtype; None = float32 (see the module docstring).

  @nn.compact
  def __call__(self, z, train: bool = False):
    x = _dense_layers(self, z, train)  # Created first: the hidden layers are Dense_0...
    x = nn.Dense(math.prod(self.output_shape), kernel_init=_kernel_init(self), dtype=self.dtype)(x)
    return _float32(x.reshape((z.shape[0],) + tuple(self.output_shape)))


class ConvEncoder(nn.Module):
  """DCGAN-style encoder: Conv(f, 4x4, stride 2) per entry of `widths`, then Dense.

  The first convolution has no normalisation (the DCGAN convention); later ones use `norm`.
  `[B, H, W, C] -> [B, out_features]`; each convolution halves H and W ("SAME" padding).
  """

  out_features: int
  widths: Sequence[int] = (64, 128)
  activation: str = "leaky_relu"
  norm: str = "none"
  batch_axis_name: Optional[str] = None
  kernel_init: str = "lecun_normal"
  bias_before_norm: bool = True
  norm_momentum: float = 0.9
  norm_epsilon: float = 1e-5
  spectral_norm: bool = False
  dtype: Optional[Any] = None  # Compute dtype; None = float32 (see the module docstring).
  conv_impl: str = "xla"  # xla, matmul or auto (see the module docstring).

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = ACTIVATIONS.get(self.activation)
    # None is flax's own lax.conv_general_dilated: "xla" builds exactly flax's layer.
    conv_op = conv_matmul.conv_general_dilated if _conv_impl(self) == "matmul" else None
    for i, width in enumerate(self.widths):
      conv = nn.Conv(
        width,
        (4, 4),
        strides=(2, 2),
        padding="SAME",
        use_bias=i == 0 or _hidden_bias(self),
        kernel_init=_kernel_init(self),
        dtype=self.dtype,
        conv_general_dilated=conv_op,
      )
      x = _apply(self, conv, x, train)
      if i > 0:
        x = _norm(self)(x, train)
      x = act(x)
    x = x.reshape((x.shape[0], -1))
    return _float32(
      _apply(
        self,
        nn.Dense(self.out_features, kernel_init=_kernel_init(self), dtype=self.dtype),
        x,
        train,
      )
    )


class ConvDecoder(nn.Module):
  """DCGAN-style decoder: Dense to a (H/2^n, W/2^n, widths[0]) map, then n transposed convs.

  `z [B, D]` -> Dense(h0*w0*widths[0]) -> norm -> act -> for each later width f:
  ConvTranspose(f, 4x4, stride 2) -> norm -> act; then ConvTranspose(C, 4x4, stride 2).
  With n = len(widths) upsamplings, H and W must be divisible by 2^n.
  """

  output_shape: Tuple[int, int, int]
  widths: Sequence[int] = (128, 64)
  activation: str = "relu"
  norm: str = "none"
  batch_axis_name: Optional[str] = None
  kernel_init: str = "lecun_normal"
  bias_before_norm: bool = True
  norm_momentum: float = 0.9
  norm_epsilon: float = 1e-5
  dtype: Optional[Any] = None  # Compute dtype; None = float32 (see the module docstring).
  conv_impl: str = "xla"  # xla, matmul or auto (see the module docstring).

  @nn.compact
  def __call__(self, z, train: bool = False):
    act = ACTIVATIONS.get(self.activation)
    init, bias = _kernel_init(self), _hidden_bias(self)
    # Only a non-default implementation is passed, so "xla" builds the layers exactly as before.
    matmul = {"implementation": "matmul"} if _conv_impl(self) == "matmul" else {}
    height, width, channels = self.output_shape
    scale = 2 ** len(self.widths)
    if height % scale or width % scale:
      raise ConfigError(
        f"ConvDecoder with {len(self.widths)} upsamplings needs image sides divisible by "
        f"{scale}, got {height}x{width}; change the decoder widths or the dataset."
      )
    x = nn.Dense(
      (height // scale) * (width // scale) * self.widths[0],
      use_bias=bias,
      kernel_init=init,
      dtype=self.dtype,
    )(z)
    x = act(_norm(self)(x, train))
    x = x.reshape((z.shape[0], height // scale, width // scale, self.widths[0]))
    for width_out in self.widths[1:]:
      x = ConvTranspose(
        width_out,
        (4, 4),
        strides=(2, 2),
        padding="SAME",
        use_bias=bias,
        kernel_init=init,
        dtype=self.dtype,
        **matmul,
      )(x)
      x = act(_norm(self)(x, train))
    return _float32(
      ConvTranspose(
        channels,
        (4, 4),
        strides=(2, 2),
        padding="SAME",
        kernel_init=init,
        dtype=self.dtype,
        **matmul,
      )(x)
    )


class MaxoutEncoder(nn.Module):
  """Flatten -> [Dense(h * pieces) -> maxout] * len(widths) -> Dense(out_features).

  Maxout (Goodfellow et al. 2013): hidden unit k is the largest of its `pieces` linear
  outputs, the consecutive Dense outputs k * pieces ... (k + 1) * pieces - 1. The PacGAN
  discriminator (Lin et al. 2018) is widths (200, 200, 200) with 5 pieces. Maxout is the
  non-linearity, so `activation` must be "maxout"; there is no normalisation (`norm` "none").
  """

  out_features: int
  widths: Sequence[int] = (200, 200, 200)
  activation: str = "maxout"
  norm: str = "none"
  batch_axis_name: Optional[str] = None
  kernel_init: str = "lecun_normal"
  bias_before_norm: bool = True
  spectral_norm: bool = False
  pieces: int = 5
  dtype: Optional[Any] = None  # Compute dtype; None = float32 (see the module docstring).

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.activation != "maxout" or self.norm != "none":
      raise ConfigError(
        f"The maxout body is its own non-linearity and has no norm; set activation='maxout' "
        f"and norm='none' (got {self.activation!r}, {self.norm!r})."
      )
    if self.pieces < 1:
      raise ConfigError(f"The maxout body needs pieces >= 1, got {self.pieces}.")
    x = x.reshape((x.shape[0], -1))
    for width in self.widths:
      dense = nn.Dense(
        width * self.pieces,
        use_bias=_hidden_bias(self),
        kernel_init=_kernel_init(self),
        dtype=self.dtype,
      )
      x = _apply(self, dense, x, train).reshape((x.shape[0], width, self.pieces)).max(axis=-1)
    return _float32(
      _apply(
        self,
        nn.Dense(self.out_features, kernel_init=_kernel_init(self), dtype=self.dtype),
        x,
        train,
      )
    )


ENCODERS = Registry[type]("model body")
ENCODERS.register("mlp")(MLPEncoder)
ENCODERS.register("conv")(ConvEncoder)
ENCODERS.register("maxout")(MaxoutEncoder)
DECODERS = Registry[type]("model body")
DECODERS.register("mlp")(MLPDecoder)
DECODERS.register("conv")(ConvDecoder)
