"""Convolutional VAE on MNIST: 2 stride-2 convs (32, 64) -> 16-d latent -> 2 transposed convs."""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.dataset.name = "mnist"
  config.model.family = "vae"
  config.model.latent_dim = 16
  config.model.likelihood = "bernoulli"
  config.model.encoder = base.body("conv", (32, 64), "relu")
  config.model.decoder = base.body("conv", (64, 32), "relu")
  config.optimizer.learning_rate = 1e-3
  config.train.batch_size = 128
  config.train.num_steps = 10_000
  config.train.eval_every = 2_000
  config.train.sample_every = 2_000
  return config
