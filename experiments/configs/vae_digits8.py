"""MLP VAE on the native 8x8 digits (64 pixels -> 200 -> 8-d latent); trains in seconds."""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.dataset.name = "digits"
  config.model.family = "vae"
  config.model.latent_dim = 8
  config.model.encoder = base.body("mlp", (200,), "relu")
  config.model.decoder = base.body("mlp", (200,), "relu")
  config.train.num_steps = 2_000
  return config
