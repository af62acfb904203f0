"""Convolutional autoencoder on MNIST, the AE twin of `conv_vae_mnist` (16-d code)."""

from experiments.configs import conv_vae_mnist


def get_config():
  config = conv_vae_mnist.get_config()
  config.model.family = "ae"
  return config
