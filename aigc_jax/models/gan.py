"""GAN networks: a generator (decoder body + output non-linearity) and a discriminator
(encoder body -> logit), optionally class-conditional, and PacGAN's packing of samples.

Class conditioning (`conditioning`, with `num_classes` classes; labels `[B]` int32):
- "concat": the one-hot label is joined to the generator's z, and to the discriminator's
  input (as K extra constant channels of an image, or K extra features of a point).
- "projection" (discriminator only; the generator concatenates): Miyato & Koyama 2018,
  logit = psi(phi(x)) + <embed(y), phi(x)>, with phi(x) `[B, F]` the encoder body's output
  (F = `feature_dim`), psi a Dense(1) and embed a `[K, F]` class embedding.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

CONDITIONINGS = ("none", "concat", "projection")
GENERATOR_OUTPUTS = ("tanh", "linear")


def one_hot_joined(x, labels, num_classes: int):
  """`x` with the one-hot labels joined on the last axis.

  x: `[B, D]` vectors (-> `[B, D + K]`) or `[B, H, W, C]` images (-> `[B, H, W, C + K]`, the
  one-hot vector repeated at every pixel).
  """
  code = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)
  code = code.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (num_classes,))
  return jnp.concatenate([x, jnp.broadcast_to(code, x.shape[:-1] + (num_classes,))], axis=-1)


def pack(samples, pack_size: int):
  """PacGAN packs (Lin et al. 2018): consecutive groups of `pack_size` samples, concatenated.

  samples: `[B, *S]` with B divisible by `pack_size` (m). Returns `[B / m, *S[:-1], m * S[-1]]`:
  pack p holds samples p*m ... p*m + m - 1 joined on the last axis (features of points,
  channels of images), sample j of the pack at positions j * S[-1] ... (j + 1) * S[-1] - 1.
  """
  if pack_size == 1:
    return samples
  n, shape = samples.shape[0], samples.shape[1:]
  grouped = samples.reshape((n // pack_size, pack_size) + shape)
  return jnp.moveaxis(grouped, 1, -2).reshape(
    (n // pack_size,) + shape[:-1] + (pack_size * shape[-1],)
  )


class Generator(nn.Module):
  """`__call__(z [B, latent_dim], labels [B] | None, train) -> samples [B, *sample_shape]`.

  `output` "tanh": images in [-1, 1]; "linear": the decoder's output as is (points).
  `num_classes` > 0: the one-hot label is joined to z.
  """

  decoder: nn.Module
  output: str = "tanh"
  num_classes: int = 0

  def __call__(self, z, labels=None, train: bool = False):
    if self.num_classes:
      z = one_hot_joined(z, labels, self.num_classes)
    x = self.decoder(z, train)
    return nn.tanh(x) if self.output == "tanh" else x


class Discriminator(nn.Module):
  """`__call__(x [B, *input_shape], labels [B] | None, train) -> logits [B]` (real = positive).

  `encoder` maps inputs to `[B, 1]`, or to `[B, feature_dim]` features with "projection".
  """

  encoder: nn.Module
  conditioning: str = "none"
  num_classes: int = 0
  feature_dim: int = 0
  spectral_norm: bool = False  # Of psi and the class embedding; the encoder has its own flag.

  @nn.compact
  def __call__(self, x, labels=None, train: bool = False):
    if self.conditioning == "concat":
      x = one_hot_joined(x, labels, self.num_classes)
    if self.conditioning != "projection":
      return self.encoder(x, train)[:, 0]
    features = self.encoder(x, train)
    psi = nn.Dense(1, name="psi")
    embed = nn.Embed(self.num_classes, self.feature_dim, name="class_embedding")
    if self.spectral_norm:
      psi_out = nn.SpectralNorm(psi)(features, update_stats=train)
      class_vectors = nn.SpectralNorm(embed)(labels, update_stats=train)
    else:
      psi_out, class_vectors = psi(features), embed(labels)
    return psi_out[:, 0] + jnp.sum(class_vectors * features, axis=-1)
