"""Denoisers of the diffusion family: networks `(x_t, t) -> predicted noise eps`.

`TemporalMLP` is the toy denoiser of Aithal et al. 2024 ("Understanding Hallucinations in
Diffusion Models through Mode Interpolation"), whose `toy/toy_model.py` is tqch/ddpm-torch's
`Decoder`: a sinusoidal embedding of the integer timestep through Linear + LeakyReLU(0.02);
the input through a Linear without bias; residual "temporal" layers; LayerNorm and a Linear
back to the input's size. Widths: all `width` (the authors' 128).

A temporal layer (features -> features):
  h = Linear_nobias(leaky(LayerNorm(x))) + Linear(t_emb)
  out = Linear_nobias(leaky(LayerNorm(h))) + x

Shared weights: the authors build their layers as `[TemporalLayer(...)] * 3`, a list holding
ONE module three times, so the three layers share one set of weights. `shared=True` (the
default, what they ran) applies one layer `num_layers` times; `shared=False` gives each its
own weights (what the code seems to mean, and the usual residual MLP).

Class-conditional (`num_classes > 0`, for classifier-free guidance, Ho & Salimans 2022): a
learned label embedding of `num_classes + 1` entries (the last, index `num_classes`, is "no
label") is added to the time embedding, after its Linear + LeakyReLU.

Differences from the authors' network: flax's default initialisers (lecun normal kernels, zero
biases) instead of torch's; LayerNorm epsilon 1e-5 as torch's.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

NEGATIVE_SLOPE = 0.02  # The authors' LeakyReLU slope, everywhere in the network.
LAYER_NORM_EPSILON = 1e-5  # torch's LayerNorm default, which the authors use.


def sinusoidal_embedding(timesteps: jax.Array, dim: int) -> jax.Array:
  """Sinusoidal embedding `[B, dim]` of timesteps `[B]` (integers as float), fairseq's form:
  frequencies exp(-log(10000) k / (dim/2 - 1)), k < dim/2; [sin, cos]; a zero column when
  `dim` is odd. Needs dim >= 4."""
  half = dim // 2
  frequencies = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
  angles = timesteps.astype(jnp.float32)[:, None] * frequencies[None, :]
  embedding = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  if dim % 2:
    embedding = jnp.pad(embedding, ((0, 0), (0, 1)))
  return embedding


def _leaky(x):
  return nn.leaky_relu(x, negative_slope=NEGATIVE_SLOPE)


class TemporalLayer(nn.Module):
  """A residual layer `[B, F], [B, F] -> [B, F]` fed the time embedding (module docstring)."""

  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, time_embedding, time_index=None):
    """x [B, F]; time_embedding [B or 1, F], or [T, F] rows picked by `time_index` [B] int32
    (the table of every timestep: its product is then computed T times, not B times)."""
    features = x.shape[-1]
    norm = lambda name: nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype, name=name)
    h = nn.Dense(features, use_bias=False, dtype=self.dtype, name="fc1")(_leaky(norm("norm1")(x)))
    time = nn.Dense(features, dtype=self.dtype, name="time")(time_embedding)
    h = h + (time if time_index is None else jnp.take(time, time_index, axis=0))
    h = nn.Dense(features, use_bias=False, dtype=self.dtype, name="fc2")(_leaky(norm("norm2")(h)))
    return h + x


class TemporalMLP(nn.Module):
  """The authors' toy denoiser: `(x [B, *shape], t [B] int, labels [B] int or None) -> eps
  [B, *shape]` float32.

  Samples of any shape are flattened to features and the output reshaped back. `t` may be
  `[1]`, one timestep for the whole batch (as in sampling): its embedding and projection are
  then computed once and broadcast. With `num_timesteps` T set and a batch larger than T (as
  in training at batch 10,000 and T = 1,000), the time path (embedding, projection, each
  layer's time product) is computed once per timestep 0 .. T-1 and its rows gathered by `t`:
  the same numbers, about 40% fewer multiply-adds per example.

  Attributes:
    width: features of every hidden layer and of the time embedding (the authors' 128).
    num_layers: temporal layers (the authors' 3).
    shared: one temporal layer applied `num_layers` times, as the authors ran (module
      docstring), or `num_layers` layers with their own weights.
    num_classes: classes of a class-conditional denoiser (`labels` in 0 .. num_classes,
      num_classes = no label); 0: unconditional (`labels` None).
    dtype: dtype of activations and products (parameters stay float32).
    num_timesteps: T, for the table of the time path (0: none, computed per example).
  """

  width: int = 128
  num_layers: int = 3
  shared: bool = True
  num_classes: int = 0
  dtype: str = "float32"
  num_timesteps: int = 0

  @nn.compact
  def __call__(self, x, t, labels=None):
    shape = x.shape
    features = math.prod(shape[1:])
    # The table needs a time path that depends on t alone: not with a label embedding added.
    use_table = 0 < self.num_timesteps < t.shape[0] and not self.num_classes
    time_index = t.astype(jnp.int32) if use_table else None
    rows = jnp.arange(self.num_timesteps) if use_table else t
    time_embedding = _leaky(
      nn.Dense(self.width, dtype=self.dtype, name="time_projection")(
        sinusoidal_embedding(rows, self.width)
      )
    )
    if self.num_classes:
      if labels is None:
        raise ValueError("A class-conditional TemporalMLP needs labels [B] (num_classes = none).")
      time_embedding = time_embedding + nn.Embed(
        self.num_classes + 1, self.width, dtype=self.dtype, name="label_embedding"
      )(labels)
    h = nn.Dense(self.width, use_bias=False, dtype=self.dtype, name="input")(
      x.reshape(shape[0], features)
    )
    if self.shared:
      layer = TemporalLayer(dtype=self.dtype, name="temporal")
      layers = [layer] * self.num_layers
    else:
      layers = [
        TemporalLayer(dtype=self.dtype, name=f"temporal_{i}") for i in range(self.num_layers)
      ]
    for layer in layers:
      h = layer(h, time_embedding, time_index)
    h = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype, name="output_norm")(h)
    out = nn.Dense(features, dtype=self.dtype, name="output")(h)
    return out.astype(jnp.float32).reshape(shape)
