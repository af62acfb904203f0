"""Class-conditional VAE on the digits resized to 28x28 (offline): the default MLP VAE with the
one-hot digit class joined to the encoder's input and to the decoder's latent.

Sohn, Lee & Yan 2015, "Learning Structured Output Representation using Deep Conditional
Generative Models" (NeurIPS): q(z | x, y), p(x | z, y), prior N(0, I). Samples are drawn per
class (`generate(..., labels)`; by default classes 0, 1, ..., 9, 0, ...).
"""

from experiments.configs import vae_digits


def get_config():
  config = vae_digits.get_config()
  config.model.conditioning = "concat"
  return config
