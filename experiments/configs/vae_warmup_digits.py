"""VAE with KL warm-up on the digits resized to 28x28 (offline).

Bowman et al. 2016, "Generating Sentences from a Continuous Space" (CoNLL), and Sønderby et
al. 2016, "Ladder Variational Autoencoders" (NeurIPS): the KL weight rises linearly from 0 at
step 0 to `model.beta` (1) at step `model.kl_warmup_steps`, so the decoder learns to use the
latent before the KL term pulls the posterior onto the prior. Training logs the weight as
"beta"; evaluation scores the full ELBO (beta = `model.beta`).
"""

from experiments.configs import vae_digits


def get_config():
  config = vae_digits.get_config()
  config.model.kl_warmup_steps = 500  # A third of the 1,500 steps.
  config.model.kl_warmup_start = 0.0
  return config
