"""Class-conditional DDPM on digits28 by classifier-free guidance (Ho & Salimans 2022,
"Classifier-Free Diffusion Guidance"): `ddpm_digits`'s UNet, schedule, optimiser and DDIM
sampler, with a learned embedding of the digit class (10 classes + "no label") added to the
time embedding (`model.conditioning = "embedding"`). Training drops each example's label to
"no label" with probability 0.1 (their p_uncond); sampling guides with w = 2:
eps = (1 + w) eps(x, class) - w eps(x, no label), which trades diversity for samples that
look more like their class (lower control error). Two UNet passes per reverse step.

Run time here: as `ddpm_digits` for training (the label embedding costs nothing measurable);
sampling takes twice its time.
"""

from experiments.configs import ddpm_digits


def get_config():
  config = ddpm_digits.get_config()
  config.model.conditioning = "embedding"
  config.model.diffusion.label_dropout = 0.1
  config.model.diffusion.guidance_scale = 2.0
  return config
