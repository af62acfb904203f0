"""In-domain classifier on the digits resized to 28x28 (offline): the oracle for digits28."""

from experiments.configs import classifier_mnist


def get_config():
  config = classifier_mnist.get_config()
  config.dataset.name = "digits28"
  config.train.batch_size = 64
  config.train.num_steps = 600
  config.train.log_every = 50
  config.train.eval_every = 200
  return config
