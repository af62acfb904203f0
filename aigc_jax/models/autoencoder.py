"""Deterministic autoencoder: x -> z = enc(x) -> dec(z)."""
import flax.linen as nn


class Autoencoder(nn.Module):
  """`__call__(x [B,H,W,C], train) -> decoder outputs [B,H,W,C]` (logits or means).

  Attributes:
    encoder: body mapping images to `[B, latent_dim]` codes.
    decoder: body mapping codes back to `[B, H, W, C]` pre-activation outputs.
  """
  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x, train: bool = False):
    return self.encoder(x, train)

  def decode(self, z, train: bool = False):
    return self.decoder(z, train)

  def __call__(self, x, train: bool = False):
    return self.decode(self.encode(x, train), train)
