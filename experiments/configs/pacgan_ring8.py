"""PacGAN on the 2-D ring of 8 Gaussians, the authors' protocol (Lin et al. 2018, NeurIPS;
code fjxmlzn/PacGAN, `synthetic_data_experiments/2DRing_GAN&PacGAN/`).

`--config experiments/configs/pacgan_ring8.py:M` sets the pack size M (default 2, PacGAN2;
1 is the plain GAN of the paper's Table 1, with the same networks).

Generator: z (2-D, N(0, I)) -> 4 x [Linear 400 without bias, BatchNorm, ReLU] -> Linear 2
with bias, linear output. Discriminator: the M samples of a pack concatenated (2M inputs) ->
3 x maxout(200 units, 5 pieces) -> Linear 1, no BatchNorm. Weights N(0, 0.02^2), biases 0.
Non-saturating loss; Adam lr 1e-4, beta1 0.8 (beta2 0.999, eps 1e-8) for both networks, both
updated every step; 400,000 steps (400 epochs x 1,000 steps).

A step uses 100 packs of real points and 100 packs of generated ones, as the authors' batch of
100: `train.batch_size` counts samples, so it is 100 * M (M = 1: 100 real, 100 generated).
The generator is called once per pack slot, so its BatchNorm statistics are over 100 samples
whatever M, as in the authors' code. BatchNorm epsilon 1e-4 and running-statistics momentum
0.95 are blocks' (their framework's) values.

Known differences from the authors' code: their training set is 100,000 points drawn once and
each pack slot resamples it with replacement, as `training.multi_seed` (the benchmark's
trainer) does; through `experiments.train` the 100,000 points are shuffled each epoch instead
and a pack is M consecutive points of the shuffled batch (the points are i.i.d. draws, so a
pack is still M independent samples of the mixture). Their BatchNorm tracks a running standard
deviation, flax a running variance (this only affects sampling with population statistics).
Their trials use unseeded random initialisations; here `seed` fixes everything.

Devices: 100 packs split evenly needs 1, 2 or 4 devices (a per-device batch must hold whole
packs); on 8, change `train.batch_size` and say so.
"""

from experiments.configs import base

DATASET = "gaussian_ring8"
PACKS_PER_STEP = 100


def get_config(pack_size: str = "2"):
  pack_size = int(pack_size)
  config = base.get_base_config()
  config.dataset.name = DATASET
  config.model.family = "gan"
  config.model.latent_dim = 2
  config.model.decoder = base.body(
    "mlp",
    (400, 400, 400, 400),
    "relu",
    norm="batch",
    kernel_init="normal_0.02",
    bias_before_norm=False,
    norm_epsilon=1e-4,
    norm_momentum=0.95,
  )
  config.model.encoder = base.body(
    "maxout", (200, 200, 200), "maxout", kernel_init="normal_0.02", pieces=5
  )
  config.model.gan.loss = "non_saturating"
  config.model.gan.pack_size = pack_size
  config.model.gan.generator_output = "linear"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-4
  config.optimizer.b1 = 0.8
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.train.batch_size = PACKS_PER_STEP * pack_size
  config.train.eval_batch_size = 1_000 * pack_size
  config.train.num_steps = 400_000
  config.train.log_every = 1_000  # One of the authors' epochs.
  config.train.eval_every = 10_000
  config.train.sample_every = 10_000
  config.train.num_samples = 2_500  # Samples per periodic figure: the authors' 2,500.
  config.checkpoint.save_every = 10_000
  config.checkpoint.keep_best = 0  # GAN losses do not rank generators.
  return config
