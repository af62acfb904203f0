"""Convolutional autoencoder on the digits resized to 28x28 (offline)."""

from experiments.configs import conv_ae_mnist


def get_config():
  config = conv_ae_mnist.get_config()
  config.dataset.name = "digits28"
  config.train.num_steps = 1_500
  config.train.eval_every = 500
  config.train.sample_every = 500
  return config
