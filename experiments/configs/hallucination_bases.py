"""The hallucination benchmark's base config of each family on each known-support dataset.

`get_config("DATASET,FAMILY")`, e.g. `--config experiments/configs/hallucination_bases.py:
gaussian_ring8,gan`. The benchmark (`aigc_jax.hallucination_benchmark`) applies each
variant's knobs (found in the digits28 configs) on top of these, so a variant trains with the
networks that fit the dataset:

* 2-D mixtures (`gaussian_ring8`, `gaussian_grid25`):
  - gan: the PacGAN authors' 2-D networks (`pacgan_ring8.py`, pack size 1) made narrower
    and faster to train, so that every GAN variant fits the standard budget on a CPU:
    generator 2 -> 3 x [Linear 128, BatchNorm, ReLU] -> 2, discriminator 3 x maxout(64, 5)
    -> 1, non-saturating loss, Adam lr 5e-4, beta1 0.5, 100 samples per step (about 11x
    fewer multiply-adds per step than the authors' 4 x 400 / 3 x maxout(200, 5), which
    need lr 1e-4 and 400,000 steps: `--protocol pacgan` trains exactly those).
  - ae / vae: MLPs 2 -> 128 -> 128 -> latent 2 (and back), ReLU, the Gaussian likelihood
    with fixed std 0.05 and unbounded outputs (points are not in [0, 1]), Adam lr 1e-3,
    batch 100.
  - diffusion: `ddpm_ring8.py` as it is: the authors' toy denoiser (TemporalMLP, 128 wide,
    3 temporal layers sharing one set of weights, as they ran it), T = 100, linear betas
    1e-4 .. 0.1, ancestral sampling over all 100 steps, no clipping, the points diffused
    unscaled; Adam lr 1e-3, batch 512, EMA 0.99. Fixed-SMALL variance (the posterior's):
    the ring's modes have std 0.01 and the "large" variance's last step alone adds noise
    of std ~0.033, beyond the support rule's 3 std (ddpm_ring8's docstring); the grid's
    modes (std 0.05) would allow either, and take the same for one base on both. Batch 512
    (not 100): at 100 the 2,000 steps leave most samples between the modes. On the grid
    (coordinates up to 4) the chain's last step keeps sqrt(abar_{T-1}) ~ 0.07 of the data,
    a small mismatch with the N(0, I) it starts from.
* `simple_shapes` (32x32 binary images):
  - ae / vae: Conv 32 -> Conv 64 (4x4, stride 2) encoder, latent 16, Dense -> 8x8x64 ->
    ConvTranspose 32 -> ConvTranspose 1 decoder, Bernoulli likelihood, Adam lr 1e-3.
  - gan: DCGAN-style, latent 32; discriminator Conv 32 -> Conv 64 with BatchNorm, leaky ReLU;
    generator Dense -> 8x8x64 -> ConvTranspose 32 -> ConvTranspose 1 with BatchNorm, tanh;
    non-saturating loss, Adam lr 2e-4, beta1 0.5.
  - diffusion: a small image UNet (`denoiser = "unet"`: 16 channels, levels x1, x2, x2 at
    32, 16, 8 pixels, one residual block per level, no attention; 0.26 M parameters),
    T = 1000, cosine schedule, clipped predictions, DDIM over 25 steps to keep sampling
    cheap (evenly spaced timesteps), EMA 0.999, Adam lr 2e-4. Still the dearest row on a
    CPU: measured on this shared 2-core machine under load, 2.7 s per step of 60 images and
    190 s per 500 samples at 50 DDIM steps (so about 70 minutes per seed for the standard
    1,500 steps); run it on an accelerator or with `--steps`.
  All with 60 images per step (divisible by 2, 3, 4, 5: the packs and discriminator steps of
  the variants).

`train.num_steps` here is the benchmark's standard budget; `--quick` and `--steps` change it.
"""

from experiments.configs import base, ddpm_ring8, pacgan_ring8

DATASETS = ("gaussian_ring8", "gaussian_grid25", "simple_shapes")
FAMILIES = ("ae", "vae", "gan", "diffusion")
# The standard budget, sized for a shared 2-core CPU (every family and variant; 3 seeds on
# the mixtures, 2 on shapes): see experiments/results/hallucination/README.md.
STANDARD_STEPS = {"gaussian_ring8": 2_000, "gaussian_grid25": 2_000, "simple_shapes": 1_500}


def _points(family: str):
  if family == "diffusion":
    config = ddpm_ring8.get_config()
  elif family == "gan":
    config = pacgan_ring8.get_config("1")
    config.model.decoder.widths = (128, 128, 128)
    config.model.encoder.widths = (64, 64, 64)
    config.optimizer.learning_rate = 5e-4
    config.optimizer.b1 = 0.5
  else:
    config = base.get_base_config()
    config.model.family = family
    config.model.latent_dim = 2
    config.model.likelihood = "gaussian"
    config.model.likelihood_scale = 0.05
    config.model.output_range = "unbounded"
    config.model.encoder = base.body("mlp", (128, 128), "relu")
    config.model.decoder = base.body("mlp", (128, 128), "relu")
    config.optimizer.learning_rate = 1e-3
    config.train.batch_size = 100
    config.train.eval_batch_size = 1_000
  return config


def _shapes(family: str):
  config = base.get_base_config()
  config.model.family = family
  if family == "diffusion":
    config.model.output_range = "unit"  # Diffuses 2x - 1.
    diffusion = config.model.diffusion
    diffusion.denoiser = "unet"
    diffusion.channels = 16
    diffusion.channel_multipliers = (1, 2, 2)
    diffusion.res_blocks_per_level = 1
    diffusion.attention = False
    diffusion.norm_groups = 8
    diffusion.num_timesteps = 1000
    diffusion.schedule = "cosine"
    diffusion.clip_denoised = True
    diffusion.sampler = "ddim"
    diffusion.sampling_steps = 25
    diffusion.ema_decay = 0.999
    config.optimizer.learning_rate = 2e-4
  elif family == "gan":
    config.model.latent_dim = 32
    config.model.encoder = base.body("conv", (32, 64), "leaky_relu", norm="batch")
    config.model.decoder = base.body("conv", (64, 32), "relu", norm="batch")
    config.optimizer.learning_rate = 2e-4
    config.optimizer.b1 = 0.5
    config.checkpoint.keep_best = 0
  else:
    config.model.latent_dim = 16
    config.model.likelihood = "bernoulli"
    config.model.encoder = base.body("conv", (32, 64), "relu")
    config.model.decoder = base.body("conv", (64, 32), "relu")
    config.optimizer.learning_rate = 1e-3
  config.train.batch_size = 60
  config.train.eval_batch_size = 240
  return config


def pacgan_config(dataset: str, pack_size: int):
  """The PacGAN authors' exact 2-D config (`pacgan_ring8.py`) with pack size M on `dataset`:
  what `--protocol pacgan` trains (not the narrower standard GAN above)."""
  config = pacgan_ring8.get_config(str(pack_size))
  config.dataset.name = dataset
  return config


def get_config(arg: str = "simple_shapes,vae"):
  dataset, family = (part.strip() for part in arg.split(","))
  if dataset not in DATASETS or family not in FAMILIES:
    raise ValueError(
      f"hallucination_bases.py takes 'DATASET,FAMILY' with DATASET in "
      f"{DATASETS} and FAMILY in {FAMILIES}, got {arg!r}."
    )
  config = _shapes(family) if dataset == "simple_shapes" else _points(family)
  config.dataset.name = dataset
  config.train.num_steps = STANDARD_STEPS[dataset]
  config.train.eval_every = config.train.num_steps
  config.train.sample_every = config.train.num_steps
  config.checkpoint.save_every = config.train.num_steps
  return config
