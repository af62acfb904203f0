"""Variational autoencoder with a diagonal Gaussian posterior (Kingma & Welling, 2014).

The encoder body outputs `2 * latent_dim` numbers: the posterior mean and log-variance. The
reparameterisation noise `eps ~ N(0, I)` is an argument, not drawn inside the module, so the
caller controls exactly which key makes each example's noise (see `training.noise`).

Class-conditional (CVAE, Sohn et al. 2015) when a one-hot `condition [B, K]` is given: it is
joined to the encoder's input and to the decoder's latent (`models.conditioning`).
"""

import flax.linen as nn
import jax.numpy as jnp

from aigc_jax.models.conditioning import join_label


class VAE(nn.Module):
  """`__call__(x, eps, condition=None, train) -> (decoder outputs, mean [B,L], logvar [B,L])`.

  Attributes:
    encoder: body mapping inputs `[B, *sample_shape]` (label joined) to `[B, 2 * latent_dim]`.
    decoder: body mapping latents `[B, latent_dim (+ K)]` to pre-activation outputs.
  """

  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x, condition=None, train: bool = False):
    """Returns the posterior mean and log-variance, each `[B, latent_dim]`."""
    x = join_label(x, condition, flatten=getattr(self.encoder, "flattens_input", False))
    mean, logvar = jnp.split(self.encoder(x, train), 2, axis=-1)
    return mean, logvar

  def decode(self, z, condition=None, train: bool = False):
    return self.decoder(join_label(z, condition), train)

  def __call__(self, x, eps, condition=None, train: bool = False):
    mean, logvar = self.encode(x, condition, train)
    z = mean + jnp.exp(0.5 * logvar) * eps
    return self.decode(z, condition, train), mean, logvar
