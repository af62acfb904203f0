"""Denoising autoencoder on the digits resized to 28x28 (offline): the convolutional AE of
`ae_digits`, trained to reconstruct each clean digit from a copy with 25% of its pixels zeroed.

Vincent, Larochelle, Bengio & Manzagol 2008, "Extracting and Composing Robust Features with
Denoising Autoencoders" (ICML): masking noise, loss -log p(x | dec(enc(x~))) against the clean
x. Evaluation and reconstructions use clean inputs.
"""

from experiments.configs import ae_digits


def get_config():
  config = ae_digits.get_config()
  config.model.corruption = "masking"  # Or gaussian (level = std), salt_and_pepper.
  config.model.corruption_level = 0.25
  return config
