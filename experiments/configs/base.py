"""Defaults shared by every experiment config; each config file changes what it needs.

Every knob the library reads lives here, with what it means. Override any from the command
line: `--config.train.num_steps=500 --config.optimizer.learning_rate=3e-4`. The allowed range
of each value is checked before a run starts (`aigc_jax/config_rules.py`, `RULES`: add a rule
there with a new key; the library holds no second copy of a range); a resumed run may
change only the keys in `CHANGEABLE_ON_RESUME` there (intervals, `num_samples`,
`eval_batch_size`, checkpoint retention, `data_dir`, a longer `num_steps`) unless
`--allow_config_change`. A model family is built from `config.model`
alone, plus the dataset's number of classes and the optimiser of `config.optimizer`
(`aigc_jax/training/family.py`, `build_family`).
"""

import ml_collections


def body(
  name: str,
  widths,
  activation: str,
  norm: str = "none",
  *,
  kernel_init: str = "lecun_normal",
  bias_before_norm: bool = True,
  **options,
) -> ml_collections.ConfigDict:
  """An encoder or decoder body: "mlp" (Dense widths), "conv" (4x4 stride-2 conv widths) or,
  encoders only, "maxout" (Dense widths with maxout units; `pieces=5` linear pieces each).

  kernel_init: "lecun_normal" (flax's default) or "normal_0.02" (N(0, 0.02^2), DCGAN/PacGAN).
  bias_before_norm: False drops the bias of the layers followed by a norm (needs norm="batch").
  options: body-specific keys, e.g. `pieces` of the maxout body.
  """
  return ml_collections.ConfigDict(
    dict(
      body=name,
      widths=tuple(widths),
      activation=activation,
      norm=norm,
      kernel_init=kernel_init,
      bias_before_norm=bias_before_norm,
      **options,
    )
  )


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds initialisation, data order and all noise.

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "digits28"  # digits, digits28, mnist, fashion_mnist, cifar10.
  # Where tfds datasets live (an existing directory); empty = tfds's default
  # (~/tensorflow_datasets or $TFDS_DATA_DIR).
  config.dataset.data_dir = ""

  config.model = ml_collections.ConfigDict()
  config.model.family = "vae"  # ae, vae, gan or diffusion.
  config.model.latent_dim = 20
  config.model.likelihood = "bernoulli"  # AE/VAE observation model: bernoulli or gaussian.
  config.model.likelihood_scale = 0.1  # Fixed std of the gaussian likelihood, in [0, 1] pixels.
  config.model.beta = 1.0  # Weight of the VAE's KL term (beta-VAE, Higgins et al. 2017).
  # Class conditioning: none; concat (one-hot label joined to the networks' inputs: VAE, GAN);
  # projection (GAN only: projection discriminator, Miyato & Koyama 2018); embedding (diffusion
  # only: a label embedding added to the time embedding, classifier-free guidance).
  config.model.conditioning = "none"
  # VAE KL warm-up (Bowman et al. 2016): beta rises linearly from kl_warmup_start at step 0 to
  # model.beta at step kl_warmup_steps, then stays; 0 = no warm-up (beta from the start).
  config.model.kl_warmup_steps = 0
  config.model.kl_warmup_start = 0.0  # The KL weight at step 0 of the warm-up.
  # Denoising AE (Vincent et al. 2008): the AE encoder sees corrupted inputs in training and
  # the loss targets the clean ones. none, gaussian (additive, std = level), masking (each
  # feature zeroed with probability level) or salt_and_pepper (each feature set to 0 or 1
  # with probability level).
  config.model.corruption = "none"
  config.model.corruption_level = 0.0  # gaussian: > 0; masking, salt_and_pepper: in (0, 1].
  # AE/VAE/diffusion data range: unit (images in [0, 1]; gaussian means clipped to it; the
  # diffusion family diffuses 2x - 1) or unbounded (e.g. 2-D points; gaussian likelihood only).
  config.model.output_range = "unit"
  # Python modules imported before the family is built, so that what they register (a family,
  # body, likelihood, corruption...) can be named by this config, in training and evaluation.
  config.model.imports = ()
  # Dtype of activations and matrix products: float32, or bfloat16 for GPUs and TPUs
  # (parameters, optimiser states and losses stay float32; slower than float32 on most CPUs).
  config.model.compute_dtype = "float32"
  # How the conv bodies compute convolutions: xla (flax's ops; on a CPU the fastest for one
  # seed stepped from Python), matmul (slices and one matrix product: same parameters and
  # values; on a CPU about 20x faster than xla under lax.scan, 2-4x slower from Python) or
  # auto (matmul on a CPU backend, xla elsewhere). See docs/benchmarks.md (multi_seed).
  config.model.conv_impl = "xla"
  # Encoder: AE/VAE encoder or GAN discriminator. Decoder: AE/VAE decoder or GAN generator.
  config.model.encoder = body("mlp", (400,), "relu")
  config.model.decoder = body("mlp", (400,), "relu")

  config.model.gan = ml_collections.ConfigDict()  # GAN family only (aigc_jax/training/gan.py).
  # non_saturating (Goodfellow et al. 2014), hinge (Lim & Ye 2017; Miyato et al. 2018) or
  # wasserstein (Arjovsky et al. 2017; use it with the gradient penalty).
  config.model.gan.loss = "non_saturating"
  # Discriminator regulariser: none; gradient_penalty (WGAN-GP, Gulrajani et al. 2017: (|grad
  # D(x_hat)| - 1)^2 on random interpolates of real and fake); r1 (Mescheder et al. 2018:
  # 0.5 |grad D(x)|^2 on reals). Both need a discriminator without BatchNorm.
  config.model.gan.regularizer = "none"
  config.model.gan.regularizer_weight = 10.0  # >= 0: lambda of WGAN-GP, gamma of R1.
  # Spectral normalisation of every discriminator layer (Miyato et al. 2018).
  config.model.gan.spectral_norm = False
  # Exponential moving average of the generator's weights, used by sampling and evaluation:
  # ema = decay * ema + (1 - decay) * params after each step. 0 = off; else in (0, 1).
  config.model.gan.ema_decay = 0.0
  # DiffAugment (Zhao et al. 2020) of every discriminator input, real and fake: "" = off, or a
  # comma-separated policy of color, translation, cutout (e.g. "color,translation,cutout").
  config.model.gan.diff_augment = ""
  # PacGAN (Lin et al. 2018): the discriminator judges packs of this many samples, concatenated
  # (features for points, channels for images); 1 = the plain GAN. A step uses batch_size real
  # and batch_size generated samples, i.e. batch_size / pack_size packs of each, so the
  # per-device batch (and eval batch) must be divisible by it (`config_rules.check_batch_sizes`).
  config.model.gan.pack_size = 1
  # Discriminator updates per generator update (WGAN-GP's n_critic): the batch is split into
  # this many chunks (example i in chunk i mod k), one update each; the generator's update
  # then uses the whole batch. batch_size must be divisible by pack_size * this.
  config.model.gan.discriminator_steps = 1
  # Generator output: tanh (images: data mapped [0, 1] -> [-1, 1]) or linear (points: data as is).
  config.model.gan.generator_output = "tanh"

  # Diffusion family only (aigc_jax/training/diffusion.py): DDPM (Ho et al. 2020), epsilon
  # prediction, Ho's simple loss.
  config.model.diffusion = ml_collections.ConfigDict()
  config.model.diffusion.num_timesteps = 1000  # T: timesteps 0 .. T-1.
  # Noise schedule: linear (betas from beta_start to beta_end; Ho et al.'s 1e-4 to 0.02) or
  # cosine (Nichol & Dhariwal 2021, with offset s = cosine_offset).
  config.model.diffusion.schedule = "linear"
  config.model.diffusion.beta_start = 1e-4  # In (0, 1), <= beta_end.
  config.model.diffusion.beta_end = 0.02  # In (0, 1).
  config.model.diffusion.cosine_offset = 0.008
  # Fixed reverse variance of DDPM sampling: large (beta_t) or small (the posterior's).
  config.model.diffusion.variance = "large"
  # Sampler of `generate`: ddpm (ancestral) or ddim (Song et al. 2021, eta = 0).
  config.model.diffusion.sampler = "ddpm"
  # Reverse steps of sampling, evenly spaced over the T timesteps; <= num_timesteps.
  config.model.diffusion.sampling_steps = 1000
  # Clip the predicted clean sample to [-1, 1] while sampling (output_range unit only).
  config.model.diffusion.clip_denoised = False
  # EMA of the denoiser's weights, which sampling uses: ema = decay * ema + (1 - decay) *
  # params after each step; in [0, 1), 0 = sample with the trained weights.
  config.model.diffusion.ema_decay = 0.999
  # Denoiser: mlp (the toy MLP of Aithal et al. 2024 / tqch/ddpm-torch, aigc_jax/models/
  # denoisers.py) of this width, with num_temporal_layers residual temporal layers.
  config.model.diffusion.denoiser = "mlp"
  config.model.diffusion.width = 128  # >= 4 (the sinusoidal time embedding has this width).
  config.model.diffusion.num_temporal_layers = 3
  # True: ONE temporal layer applied num_temporal_layers times (shared weights), which is
  # what the authors ran (`[TemporalLayer(...)] * 3`); False: each layer its own weights.
  config.model.diffusion.shared_temporal_layers = True
  # Denoiser unet (aigc_jax/models/unet.py, images only): a UNet whose first level has this
  # many channels, level i channels * channel_multipliers[i]; H and W halve between levels
  # (they must be divisible by 2^(levels - 1)); res_blocks_per_level residual blocks per level
  # on the way down, one more up; self-attention at the lowest resolution if attention;
  # GroupNorm with norm_groups groups (every level's channels divisible by it).
  config.model.diffusion.channels = 32
  config.model.diffusion.channel_multipliers = (1, 2, 2)
  config.model.diffusion.res_blocks_per_level = 1
  config.model.diffusion.attention = True
  config.model.diffusion.norm_groups = 8
  # Classifier-free guidance (Ho & Salimans 2022), with model.conditioning="embedding": each
  # training example's label is dropped ("no label") with probability label_dropout, in [0, 1);
  # sampling uses eps = (1 + w) eps(x, class) - w eps(x, no label), w = guidance_scale >= 0
  # (0: the plain conditional model).
  config.model.diffusion.label_dropout = 0.1
  config.model.diffusion.guidance_scale = 1.0

  config.optimizer = ml_collections.ConfigDict()  # Used for both GAN networks too.
  config.optimizer.name = "adam"  # adam, adamw or sgd.
  config.optimizer.learning_rate = 1e-3
  # The learning rate of the update of step t (0-based): constant; warmup_cosine (0 ->
  # learning_rate linearly over warmup_steps, then a cosine down to the final rate at
  # train.num_steps); warmup_linear_decay (0 -> learning_rate linearly over warmup_steps,
  # constant, then linearly down to the final rate over the last decay_fraction of the run:
  # a decay at the end of training). Both decays depend on train.num_steps: a resume cannot
  # extend such a run without --allow_config_change.
  config.optimizer.schedule = "constant"
  config.optimizer.warmup_steps = 0  # warmup_cosine, warmup_linear_decay; 0 = no warm-up.
  config.optimizer.decay_fraction = 0.0  # warmup_linear_decay: in [0, 1]; 0 = no decay.
  # The final rate, as a fraction of learning_rate (warmup_cosine, warmup_linear_decay).
  config.optimizer.final_learning_rate_factor = 0.0
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 0.0  # adamw only.
  config.optimizer.momentum = 0.0  # sgd only; 0 = plain SGD.
  config.optimizer.grad_clip_norm = 0.0  # > 0 clips the global gradient norm first.

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128  # Global batch, split over all devices of all hosts.
  config.train.num_steps = 1000
  # auto (jit + shard_map, the faster here), pmap or shard_map: same numbers, and checkpoints
  # that resume under any of them (aigc_jax/training/parallel.py).
  config.train.parallel = "auto"
  config.train.log_every = 50  # Steps between scalar logs (the only host syncs of training).
  config.train.eval_every = 500  # Steps between test-split evaluations (and at the end).
  config.train.eval_batch_size = 256  # Global batch of the evaluation pass.
  config.train.sample_every = 500  # Steps between PNG grids of samples / reconstructions.
  config.train.num_samples = 64  # Images per grid (samples; half as many reconstructions).

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.save_every = 500  # Steps between saves (and one at the end); 0 = end only.
  config.checkpoint.keep_last = 3  # Newest checkpoints kept for resuming (at least 1).
  config.checkpoint.keep_best = 1  # Best-by-metric checkpoints kept apart (0 = none).
  config.checkpoint.best_metric = "loss"  # An evaluation metric of the family.
  config.checkpoint.best_mode = "min"  # min or max.
  config.checkpoint.async_save = True  # Write in the background; training waits only for the copy.
  return config
