"""A class-conditional GAN on digits28 with a projection discriminator (Miyato & Koyama 2018,
"cGANs with Projection Discriminator"): logit = psi(phi(x)) + <embed(y), phi(x)>, phi the
discriminator body's 128 features, psi linear, embed a learned class embedding; spectral
normalisation of every discriminator layer, as in the paper. The generator takes the one-hot
class joined to z. Networks and optimiser otherwise as `gan_digits`.
"""

from experiments.configs import gan_digits


def get_config():
  config = gan_digits.get_config()
  config.model.conditioning = "projection"
  config.model.encoder.norm = "none"
  config.model.gan.spectral_norm = True
  return config
