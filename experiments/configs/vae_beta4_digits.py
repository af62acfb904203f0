"""beta-VAE on the digits resized to 28x28 (offline): the default MLP VAE with beta = 4.

Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework" (ICLR): loss = -log p(x | z) + beta * KL(q(z | x) || N(0, I)) with beta > 1, which
trades reconstruction for a posterior closer to the factorised prior.
"""

from experiments.configs import vae_digits


def get_config():
  config = vae_digits.get_config()
  config.model.beta = 4.0
  return config
