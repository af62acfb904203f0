"""`gan_digits` with the R1 penalty (Mescheder, Geiger & Nowozin 2018, "Which Training Methods
for GANs do actually Converge?"): the discriminator's loss adds gamma / 2 * E|grad D(x)|^2 on
real images, gamma = 10, and its BatchNorm is removed (the penalty is per example).
"""

from experiments.configs import gan_digits


def get_config():
  config = gan_digits.get_config()
  config.model.encoder.norm = "none"
  config.model.gan.regularizer = "r1"
  config.model.gan.regularizer_weight = 10.0
  return config
