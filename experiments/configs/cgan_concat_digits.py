"""A class-conditional GAN on digits28 by concatenation (Mirza & Osindero 2014, "Conditional
Generative Adversarial Nets"): the one-hot class joins the generator's z and, as 10 constant
channels, the discriminator's input image. Networks and optimiser as `gan_digits`; training
conditions on the real batch's labels; image grids cycle through the classes.
"""

from experiments.configs import gan_digits


def get_config():
  config = gan_digits.get_config()
  config.model.conditioning = "concat"
  return config
