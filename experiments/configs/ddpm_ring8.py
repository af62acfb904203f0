"""DDPM on the 2-D ring of 8 Gaussians (`gaussian_ring8`), with the toy denoiser of Aithal et
al. 2024 (tqch/ddpm-torch's MLP: 128 wide, 3 temporal layers sharing one set of weights, as
the authors ran it).

A small, fast setting (about 30 s on this 2-core CPU), not the paper's protocol: T = 100 with
linear betas 1e-4 .. 0.1 (a short chain must still end near N(0, I): abar_{T-1} ~ 0.006),
ancestral sampling over all 100 steps, no clipping; Adam lr 1e-3, batch 512, 2,000 steps; an
EMA of decay 0.99 samples. Fixed-SMALL variance (the posterior's): the ring's modes have
standard deviation 0.01, and the "large" variance's last noisy step alone adds noise of
standard deviation sqrt(beta_1) ~ 0.033, beyond the support rule's 3 standard deviations
(measured: ~25% of samples in support with "large", ~70% with "small", at this budget).
"""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.dataset.name = "gaussian_ring8"
  config.model.family = "diffusion"
  config.model.output_range = "unbounded"  # Points, diffused as they are.
  diffusion = config.model.diffusion
  diffusion.num_timesteps = 100
  diffusion.schedule = "linear"
  diffusion.beta_start = 1e-4
  diffusion.beta_end = 0.1
  diffusion.variance = "small"
  diffusion.sampler = "ddpm"
  diffusion.sampling_steps = 100
  diffusion.ema_decay = 0.99
  diffusion.width = 128
  diffusion.num_temporal_layers = 3
  diffusion.shared_temporal_layers = True
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.train.batch_size = 512
  config.train.eval_batch_size = 1_000
  config.train.num_steps = 2_000
  config.train.log_every = 100
  config.train.eval_every = 1_000
  config.train.sample_every = 1_000
  config.train.num_samples = 2_000
  config.checkpoint.save_every = 1_000
  return config
