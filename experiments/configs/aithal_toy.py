"""Aithal et al. 2024's toy diffusion model, as the authors ran it (`gaussian_experiments/
train_toy.py` and `run.sh` of locuslab/diffusion-model-hallucination): `get_config("gaussian1d")`
or `get_config("grid25")`, the datasets of `--protocol aithal`
(`aigc_jax/hallucination_benchmark/aithal.py`, which trains it on its own points: the
`dataset` and `train` sections other than the batch size are not read).

DDPM with T = 1000, linear betas 0.001 .. 0.2, epsilon prediction, fixed-large variance
(sigma_t^2 = beta_t), no clipping of the predicted clean sample, 1000-step ancestral
sampling; the authors' MLP (tqch/ddpm-torch's toy `Decoder`: 128 wide, three temporal layers
that share ONE set of weights, as `[TemporalLayer(...)] * 3` builds them); Adam lr 1e-3,
betas (0.9, 0.999), no warm-up, clipping, decay or EMA (the EMA decay 0 samples the trained
weights); batch 10,000.
"""

from experiments.configs import base

DIMENSIONS = {"gaussian1d": 1, "grid25": 2}


def get_config(dataset: str = "grid25"):
  if dataset not in DIMENSIONS:
    raise ValueError(f"aithal_toy.py takes one of {sorted(DIMENSIONS)}, got {dataset!r}")
  config = base.get_base_config()
  config.dataset.name = "gaussian_grid25"
  config.model.family = "diffusion"
  config.model.output_range = "unbounded"
  diffusion = config.model.diffusion
  diffusion.num_timesteps = 1_000
  diffusion.schedule = "linear"
  diffusion.beta_start = 0.001
  diffusion.beta_end = 0.2
  diffusion.variance = "large"
  diffusion.sampler = "ddpm"
  diffusion.sampling_steps = 1_000
  diffusion.clip_denoised = False
  diffusion.ema_decay = 0.0
  diffusion.width = 128
  diffusion.num_temporal_layers = 3
  diffusion.shared_temporal_layers = True
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.train.batch_size = 10_000
  config.train.num_steps = {"gaussian1d": 20_000, "grid25": 100_000}[dataset]
  return config
