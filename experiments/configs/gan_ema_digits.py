"""`gan_digits` with an exponential moving average of the generator's weights (Yazici et al.
2019, "The Unusual Effectiveness of Averaging in GAN Training"; as in Karras et al. 2018 and
Brock et al. 2019): decay 0.999, about a 1,000-step window. Sampling and evaluation use the
average; it is saved in checkpoints.
"""

from experiments.configs import gan_digits


def get_config():
  config = gan_digits.get_config()
  config.model.gan.ema_decay = 0.999
  return config
