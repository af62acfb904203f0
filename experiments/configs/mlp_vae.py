"""Reference `mlp_vae` on MNIST, defined exactly (benchmarks compare it with other code).

Encoder 784 -> 400 ReLU -> (mean, log-variance) of 20; decoder 20 -> 400 ReLU -> 784
Bernoulli logits; Adam lr 1e-3; batch 128.
"""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.dataset.name = "mnist"
  config.model.family = "vae"
  config.model.latent_dim = 20
  config.model.likelihood = "bernoulli"
  config.model.encoder = base.body("mlp", (400,), "relu")
  config.model.decoder = base.body("mlp", (400,), "relu")
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.train.batch_size = 128
  config.train.num_steps = 10_000
  config.train.eval_every = 2_000
  config.train.sample_every = 2_000
  return config
