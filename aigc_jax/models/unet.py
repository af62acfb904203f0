"""A small UNet denoiser for images: `(x_t [B, H, W, C], t, labels) -> eps [B, H, W, C]`.

The DDPM network of Ho et al. 2020 (after PixelCNN++'s UNet), cut down for a CPU:
- time embedding: `sinusoidal_embedding(t, channels)` -> Dense(4 channels) -> swish ->
  Dense(4 channels); a class-conditional UNet (`num_classes > 0`) adds a learned label
  embedding of `num_classes + 1` entries (the last, index `num_classes`, is "no label",
  which classifier-free guidance trains by label dropout), as Ho & Salimans 2022 do;
- a 3x3 input conv to `channels`; then one level per channel multiplier, each of
  `res_blocks` residual blocks; between levels a stride-2 3x3 conv halves H and W;
- the middle: residual block, self-attention (optional), residual block, at the lowest
  resolution;
- the way up mirrors it with `res_blocks + 1` blocks per level, each fed the matching
  activation of the way down (skip connections, concatenated on channels); between levels a
  nearest-neighbour x2 resize and a 3x3 conv (not a transposed conv: its kernel gradient is
  the slow path of XLA's CPU backend, /work/shared/STACK_FACTS.md);
- GroupNorm -> swish -> 3x3 conv back to C channels.

A residual block (`in -> out` channels):
  h = Conv3x3(swish(GroupNorm(x))) + Dense(swish(embedding))[:, None, None, :]
  h = Conv3x3(swish(GroupNorm(h)))
  out = h + (x if in == out else Conv1x1(x))
Self-attention: one head over the H * W positions of GroupNorm(x), plus x.

Differences from Ho et al.'s network: no dropout; flax's default initialisers (they zero the
last conv of each block and of the network); one attention head at the lowest resolution
only. H and W must be divisible by 2^(levels - 1) (28x28: up to 3 levels; 32x32: up to 6).
"""

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.models.denoisers import sinusoidal_embedding


def check_resolution(height: int, width: int, num_levels: int) -> None:
  """Raises ValueError unless H and W halve cleanly `num_levels - 1` times (the way up must
  land on the skip connections' sizes)."""
  factor = 2 ** (num_levels - 1)
  if height % factor or width % factor:
    raise ValueError(
      f"A UNet of {num_levels} levels halves the image {num_levels - 1} times, so its "
      f"height and width must be divisible by {factor}; got {height}x{width}: use fewer "
      "channel multipliers (levels) or pad the images."
    )


class ResidualBlock(nn.Module):
  """`x [B, H, W, in], embedding [B or 1, E] -> [B, H, W, features]` (module docstring)."""

  features: int
  groups: int
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, embedding):
    conv = lambda name: nn.Conv(self.features, (3, 3), dtype=self.dtype, name=name)
    norm = lambda name: nn.GroupNorm(num_groups=self.groups, dtype=self.dtype, name=name)
    h = conv("conv1")(nn.swish(norm("norm1")(x)))
    h = (
      h
      + nn.Dense(self.features, dtype=self.dtype, name="embedding")(nn.swish(embedding))[
        :, None, None, :
      ]
    )
    h = conv("conv2")(nn.swish(norm("norm2")(h)))
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), dtype=self.dtype, name="skip")(x)
    return x + h


class SelfAttention(nn.Module):
  """One-head self-attention over the positions of `x [B, H, W, C]`, residual."""

  groups: int
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x):
    batch, height, width, channels = x.shape
    h = nn.GroupNorm(num_groups=self.groups, dtype=self.dtype, name="norm")(x)
    h = h.reshape(batch, height * width, channels)
    q, k, v = (
      nn.Dense(channels, dtype=self.dtype, name=name)(h) for name in ("query", "key", "value")
    )
    weights = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / math.sqrt(channels), axis=-1)
    h = jnp.einsum("bqk,bkc->bqc", weights, v)
    h = nn.Dense(channels, dtype=self.dtype, name="output")(h)
    return x + h.reshape(x.shape)


class UNet(nn.Module):
  """`(x [B, H, W, C], t [B] or [1] int, labels [B] int or None) -> eps [B, H, W, C]` float32.

  `t [1]` is one timestep for the whole batch (as samplers pass it): its embedding is
  computed once and broadcast. `labels` in 0 .. num_classes, num_classes = "no label";
  needed when `num_classes > 0`, ignored (must be None) otherwise.

  Attributes:
    channels: channels of the first level (and width of the sinusoidal time embedding).
    channel_multipliers: one per level; level i has `channels * multiplier[i]` channels.
    res_blocks: residual blocks per level on the way down (one more on the way up).
    attention: self-attention between the two middle blocks (lowest resolution).
    groups: GroupNorm groups; every level's channels must be divisible by it.
    num_classes: classes of a class-conditional UNet; 0: unconditional.
    dtype: dtype of activations and products (parameters stay float32).
  """

  channels: int = 32
  channel_multipliers: Sequence[int] = (1, 2, 2)
  res_blocks: int = 1
  attention: bool = True
  groups: int = 8
  num_classes: int = 0
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, t, labels: Optional[jax.Array] = None):
    check_resolution(x.shape[1], x.shape[2], len(self.channel_multipliers))
    embedding_width = 4 * self.channels
    embedding = nn.Dense(embedding_width, dtype=self.dtype, name="time_1")(
      sinusoidal_embedding(t, self.channels)
    )
    embedding = nn.Dense(embedding_width, dtype=self.dtype, name="time_2")(nn.swish(embedding))
    if self.num_classes:
      if labels is None:
        raise ValueError("A class-conditional UNet needs labels [B] (num_classes = no label).")
      embedding = embedding + nn.Embed(
        self.num_classes + 1, embedding_width, dtype=self.dtype, name="label_embedding"
      )(labels)
    block = lambda features, name: ResidualBlock(features, self.groups, dtype=self.dtype, name=name)

    h = nn.Conv(self.channels, (3, 3), dtype=self.dtype, name="input")(x)
    skips = [h]
    last = len(self.channel_multipliers) - 1
    for level, multiplier in enumerate(self.channel_multipliers):
      for i in range(self.res_blocks):
        h = block(self.channels * multiplier, f"down_{level}_{i}")(h, embedding)
        skips.append(h)
      if level != last:
        h = nn.Conv(
          h.shape[-1], (3, 3), strides=(2, 2), dtype=self.dtype, name=f"downsample_{level}"
        )(h)
        skips.append(h)

    features = h.shape[-1]
    h = block(features, "middle_1")(h, embedding)
    if self.attention:
      h = SelfAttention(self.groups, dtype=self.dtype, name="middle_attention")(h)
    h = block(features, "middle_2")(h, embedding)

    for level in reversed(range(len(self.channel_multipliers))):
      for i in range(self.res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = block(self.channels * self.channel_multipliers[level], f"up_{level}_{i}")(h, embedding)
      if level != 0:
        batch, height, width, channels = h.shape
        h = jax.image.resize(h, (batch, 2 * height, 2 * width, channels), "nearest")
        h = nn.Conv(channels, (3, 3), dtype=self.dtype, name=f"upsample_{level}")(h)

    h = nn.swish(nn.GroupNorm(num_groups=self.groups, dtype=self.dtype, name="output_norm")(h))
    out = nn.Conv(x.shape[-1], (3, 3), dtype=self.dtype, name="output")(h)
    return out.astype(jnp.float32)
