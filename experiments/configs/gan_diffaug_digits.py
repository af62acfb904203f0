"""`gan_digits` with DiffAugment (Zhao, Liu, Lin, Zhu & Han 2020, "Differentiable Augmentation
for Data-Efficient GAN Training"): color, translation (1/8 of the side) and cutout (1/2 of the
side), drawn per image, applied to every real and generated image the discriminator sees, in
its loss and in the generator's. The paper's policy for small data; digits28 has 1,497
training images. (On one channel, the saturation part of color does nothing.)
"""

from experiments.configs import gan_digits


def get_config():
  config = gan_digits.get_config()
  config.model.gan.diff_augment = "color,translation,cutout"
  return config
