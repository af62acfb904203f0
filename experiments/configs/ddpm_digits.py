"""DDPM with the small image UNet on the digits resized to 28x28 (offline), unconditional.

Ho et al. 2020's setting, cut to this CPU: T = 1000, linear betas 1e-4 .. 0.02, epsilon
prediction; a UNet of 32 channels x (1, 2, 2) over 28 -> 14 -> 7 pixels, one residual block
per level, self-attention at 7x7, GroupNorm of 8 groups (1.06 M parameters,
`aigc_jax/models/unet.py`); Adam lr 5e-4, batch 64, 3,000 steps; an EMA of decay 0.995 samples
(a short run: Ho's 0.9999 would still be near the initial weights). Samples by DDIM
(Song et al. 2021) over 50 of the 1000 timesteps, the predicted clean image clipped to
[-1, 1]: 1000 ancestral UNet passes per image grid are minutes on two cores.

Run time here: the full 3,000 steps were not run end to end. Measured on this 2-core CPU while
it was shared (load average 8-13): a train step of this UNet at batch 64 took about 3.4 s on
32x32 (0.3 steps/s; 16 channels: 0.74 steps/s) and about 6 s on 28x28 under the heavier
load, i.e. hours for the full budget on a shared machine; an idle one is several times
faster. Cut `--config.train.num_steps` for a quick look.
"""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.dataset.name = "digits28"
  config.model.family = "diffusion"
  config.model.output_range = "unit"  # Images: [0, 1] diffused as 2x - 1.
  diffusion = config.model.diffusion
  diffusion.num_timesteps = 1000
  diffusion.schedule = "linear"
  diffusion.beta_start = 1e-4
  diffusion.beta_end = 0.02
  diffusion.sampler = "ddim"
  diffusion.sampling_steps = 50
  diffusion.clip_denoised = True
  diffusion.ema_decay = 0.995
  diffusion.denoiser = "unet"
  diffusion.channels = 32
  diffusion.channel_multipliers = (1, 2, 2)
  diffusion.res_blocks_per_level = 1
  diffusion.attention = True
  diffusion.norm_groups = 8
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 5e-4
  config.train.batch_size = 64
  config.train.num_steps = 3_000
  config.train.log_every = 100
  config.train.eval_every = 1_000
  config.train.sample_every = 1_000
  config.train.num_samples = 64
  config.checkpoint.save_every = 1_000
  return config
