"""Variational autoencoder with a diagonal Gaussian posterior (Kingma & Welling, 2014).

The encoder body outputs `2 * latent_dim` numbers: the posterior mean and log-variance. The
reparameterisation noise `eps ~ N(0, I)` is an argument, not drawn inside the module, so the
caller controls exactly which key makes each example's noise (see `training.noise`).
"""
import flax.linen as nn
import jax.numpy as jnp


class VAE(nn.Module):
  """`__call__(x, eps, train) -> (decoder outputs [B,H,W,C], mean [B,L], logvar [B,L])`.

  Attributes:
    encoder: body mapping images to `[B, 2 * latent_dim]`.
    decoder: body mapping latents `[B, latent_dim]` to pre-activation outputs.
  """
  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x, train: bool = False):
    """Returns the posterior mean and log-variance, each `[B, latent_dim]`."""
    mean, logvar = jnp.split(self.encoder(x, train), 2, axis=-1)
    return mean, logvar

  def decode(self, z, train: bool = False):
    return self.decoder(z, train)

  def __call__(self, x, eps, train: bool = False):
    mean, logvar = self.encode(x, train)
    z = mean + jnp.exp(0.5 * logvar) * eps
    return self.decode(z, train), mean, logvar
