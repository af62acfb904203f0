"""`gan_digits` with a spectrally normalised discriminator (Miyato, Kataoka, Koyama & Yoshida
2018, "Spectral Normalization for Generative Adversarial Networks"): every convolution and
dense weight divided by its largest singular value, estimated by one power iteration per
training call; no BatchNorm in the discriminator, as in the paper.
"""

from experiments.configs import gan_digits


def get_config():
  config = gan_digits.get_config()
  config.model.encoder.norm = "none"
  config.model.gan.spectral_norm = True
  return config
