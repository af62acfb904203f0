"""The offline default: the reference MLP VAE (784-400-20) on the digits resized to 28x28.

About a minute on a laptop CPU; needs no download (scikit-learn ships the digits).
"""

from experiments.configs import mlp_vae


def get_config():
  config = mlp_vae.get_config()
  config.dataset.name = "digits28"
  config.train.num_steps = 1500
  # Three evaluations and image grids (steps 500, 1000, 1500): curves in TensorBoard, not points.
  config.train.eval_every = 500
  config.train.sample_every = 500
  return config
