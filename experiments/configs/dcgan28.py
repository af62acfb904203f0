"""Reference `dcgan28` on MNIST, defined exactly (benchmarks compare it with other code).

Generator: z(100) -> Dense 7*7*128 -> BatchNorm -> ReLU -> ConvTranspose 64 (4x4, stride 2)
-> BatchNorm -> ReLU -> ConvTranspose 1 (4x4, stride 2) -> tanh. Discriminator: Conv 64
(4x4, stride 2) -> LeakyReLU 0.2 -> Conv 128 (4x4, stride 2) -> BatchNorm -> LeakyReLU 0.2 ->
Dense 1. Non-saturating loss; Adam lr 2e-4, b1 0.5; batch 64.
"""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.dataset.name = "mnist"
  config.model.family = "gan"
  config.model.latent_dim = 100
  config.model.encoder = base.body("conv", (64, 128), "leaky_relu", norm="batch")
  config.model.decoder = base.body("conv", (128, 64), "relu", norm="batch")
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-4
  config.optimizer.b1 = 0.5
  config.train.batch_size = 64
  config.train.num_steps = 20_000
  config.train.eval_every = 5_000
  config.train.sample_every = 1_000
  config.checkpoint.keep_best = 0  # GAN losses do not rank generators; keep the latest only.
  return config
