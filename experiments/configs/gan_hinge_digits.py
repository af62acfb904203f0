"""`gan_digits` with the hinge loss (Lim & Ye 2017, "Geometric GAN"; the loss of Miyato et al.
2018's SN-GAN): the discriminator minimises max(0, 1 - D(x)) + max(0, 1 + D(G(z))), the
generator -D(G(z)). Everything else as `gan_digits`.
"""

from experiments.configs import gan_digits


def get_config():
  config = gan_digits.get_config()
  config.model.gan.loss = "hinge"
  return config
