"""Network bodies shared by every family: image -> vector encoders, vector -> image decoders.

An encoder body is the AE/VAE encoder and the GAN discriminator; a decoder body is the AE/VAE
decoder and the GAN generator. The config picks the body ("mlp" or "conv") by name.

Shapes: images are NHWC `[B, H, W, C]`; vectors are `[B, D]`. Decoders return
pre-activation outputs (logits or means); the family decides the output non-linearity.

BatchNorm (`norm="batch"`) averages its batch statistics over the named device axis
`batch_axis_name` when it is given, so a batch split over devices normalises exactly as the
whole batch would on one device.
"""
import math
from typing import Callable, ClassVar, Optional, Sequence, Tuple

import flax.linen as nn

from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.models.conv_transpose import ConvTranspose
from aigc_jax.registry import Registry, unknown_name_message

ACTIVATIONS = Registry[Callable]("activation")
ACTIVATIONS.register("relu")(nn.relu)
ACTIVATIONS.register("leaky_relu")(lambda x: nn.leaky_relu(x, negative_slope=0.2))
ACTIVATIONS.register("swish")(nn.swish)

NORMS = ("none", "batch")


class _Norm(nn.Module):
  """Identity or BatchNorm (PyTorch defaults: momentum 0.9 of the running mean, eps 1e-5)."""
  kind: str
  batch_axis_name: Optional[str]

  @nn.compact
  def __call__(self, x, train: bool):
    if self.kind == "none":
      return x
    if self.kind == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                          axis_name=self.batch_axis_name if train else None)(x)
    raise UnknownNameError(unknown_name_message("norm", self.kind, NORMS))


def _dense_layers(body: nn.Module, x, train: bool):
  """[Dense(h) -> norm -> act] for each h in `body.widths`; call inside `body`'s compact method."""
  act = ACTIVATIONS.get(body.activation)
  for width in body.widths:
    x = act(_Norm(body.norm, body.batch_axis_name)(nn.Dense(width)(x), train))
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

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _dense_layers(self, x.reshape((x.shape[0], -1)), train)
    return nn.Dense(self.out_features)(x)


class MLPDecoder(nn.Module):
  """[Dense(h) -> norm -> act] * len(widths) -> Dense(H*W*C) -> reshape to output_shape."""
  output_shape: Tuple[int, int, int]
  widths: Sequence[int] = (400,)
  activation: str = "relu"
  norm: str = "none"
  batch_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, z, train: bool = False):
    x = _dense_layers(self, z, train)  # Created first: the hidden layers are Dense_0...
    x = nn.Dense(math.prod(self.output_shape))(x)
    return x.reshape((z.shape[0],) + tuple(self.output_shape))


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

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = ACTIVATIONS.get(self.activation)
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (4, 4), strides=(2, 2), padding="SAME")(x)
      if i > 0:
        x = _Norm(self.norm, self.batch_axis_name)(x, train)
      x = act(x)
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.out_features)(x)


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

  @nn.compact
  def __call__(self, z, train: bool = False):
    act = ACTIVATIONS.get(self.activation)
    height, width, channels = self.output_shape
    scale = 2 ** len(self.widths)
    if height % scale or width % scale:
      raise ConfigError(
          f"ConvDecoder with {len(self.widths)} upsamplings needs image sides divisible by "
          f"{scale}, got {height}x{width}; change the decoder widths or the dataset.")
    x = nn.Dense((height // scale) * (width // scale) * self.widths[0])(z)
    x = act(_Norm(self.norm, self.batch_axis_name)(x, train))
    x = x.reshape((z.shape[0], height // scale, width // scale, self.widths[0]))
    for width_out in self.widths[1:]:
      x = ConvTranspose(width_out, (4, 4), strides=(2, 2), padding="SAME")(x)
      x = act(_Norm(self.norm, self.batch_axis_name)(x, train))
    return ConvTranspose(channels, (4, 4), strides=(2, 2), padding="SAME")(x)


ENCODERS = Registry[type]("model body")
ENCODERS.register("mlp")(MLPEncoder)
ENCODERS.register("conv")(ConvEncoder)
DECODERS = Registry[type]("model body")
DECODERS.register("mlp")(MLPDecoder)
DECODERS.register("conv")(ConvDecoder)
