"""GAN networks: a generator (decoder body + tanh) and a discriminator (encoder body -> logit)."""
import flax.linen as nn


class Generator(nn.Module):
  """`__call__(z [B, latent_dim], train) -> images [B, H, W, C]` in [-1, 1]."""
  decoder: nn.Module

  def __call__(self, z, train: bool = False):
    return nn.tanh(self.decoder(z, train))


class Discriminator(nn.Module):
  """`__call__(x [B, H, W, C] in [-1, 1], train) -> logits [B]` (real = positive).

  `encoder` must map images to `[B, 1]`.
  """
  encoder: nn.Module

  def __call__(self, x, train: bool = False):
    return self.encoder(x, train)[:, 0]
