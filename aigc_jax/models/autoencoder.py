"""Deterministic autoencoder: x -> z = enc(x) -> dec(z); class-conditional with `condition`."""

import flax.linen as nn

from aigc_jax.models.conditioning import join_label


class Autoencoder(nn.Module):
  """`__call__(x [B, *sample_shape], condition=None, train) -> decoder outputs` (logits or means).

  A one-hot `condition [B, K]` is joined to the encoder's input and to the code.

  Attributes:
    encoder: body mapping inputs to `[B, latent_dim]` codes.
    decoder: body mapping codes back to `[B, *sample_shape]` pre-activation outputs.
  """

  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x, condition=None, train: bool = False):
    return self.encoder(
      join_label(x, condition, flatten=getattr(self.encoder, "flattens_input", False)), train
    )

  def decode(self, z, condition=None, train: bool = False):
    return self.decoder(join_label(z, condition), train)

  def __call__(self, x, condition=None, train: bool = False):
    return self.decode(self.encode(x, condition, train), condition, train)
