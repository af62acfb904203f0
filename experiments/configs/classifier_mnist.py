"""In-domain classifier on MNIST: the class oracle and feature space of the hallucination rates.

Conv(32) -> Conv(64) (4x4, stride 2) -> Dense(128) -> relu = the features, then Dense(10).
"""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.dataset.name = "mnist"
  config.model.family = "classifier"
  config.model.encoder = base.body("conv", (32, 64), "relu")
  # Width of the penultimate layer, the feature space that evaluation measures distances in.
  config.model.feature_dim = 128
  config.optimizer.learning_rate = 1e-3
  config.train.batch_size = 128
  config.train.num_steps = 5_000
  config.train.eval_every = 1_000
  config.train.sample_every = 0  # Nothing to draw: a classifier neither samples nor reconstructs.
  return config
