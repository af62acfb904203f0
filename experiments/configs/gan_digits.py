"""The `dcgan28` networks and optimiser on the digits resized to 28x28 (offline)."""

from experiments.configs import dcgan28


def get_config():
  config = dcgan28.get_config()
  config.dataset.name = "digits28"
  config.train.num_steps = 3_000
  config.train.eval_every = 1_000
  config.train.sample_every = 500
  return config
