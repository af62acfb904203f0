"""The GAN family: both updates in one step, the loss and its variants named by the config.

One train step, per device (`config.model.gan` names each part; see experiments/configs/base.py;
per-device batches hold whole packs and chunks, `config_rules.check_batch_sizes`):
1. z_i = normal(fold_in(fold_in(key, step), i)) for example i of the global batch; the
   generator makes one sample per real example (with PacGAN packing, the batch's m pack slots
   in separate calls, so BatchNorm statistics are per slot, as in the PacGAN authors' code).
2. The discriminator's inputs: real data (mapped [0, 1] -> [-1, 1] for a tanh generator) and
   the samples, each through DiffAugment when enabled, then packed when `pack_size` > 1.
3. The discriminator is updated on mean(loss.discriminator(D(real), D(fake))) plus
   `regularizer_weight` * mean(penalty) (gradient penalty or R1, on its inputs). With
   `discriminator_steps` k > 1 (WGAN-GP's n_critic), it is updated k times in turn, update c
   on the examples whose global index is c mod k (so each sees batch_size / k real and
   batch_size / k generated samples).
4. The generator is then updated on mean(loss.generator(D'(fake))) over the whole batch,
   against the UPDATED discriminator D' (the order of the DCGAN reference loop); fresh
   DiffAugment draws.
5. With `ema_decay` > 0, an exponential moving average of the generator's parameters follows
   them; sampling and evaluation use it.
Every random draw is per example, from the example's global index, so results do not depend
on the number of devices. A conditional GAN (`model.conditioning`) trains on the real batch's
labels: the generator makes sample i for class label_i.

Metrics: d_loss (the adversarial part), g_loss, and for the non-saturating loss d_real /
d_fake (mean sigmoid of the logits), for the others real_score / fake_score (mean outputs);
`penalty` (the regulariser's mean, unweighted) when one is set. Discriminator metrics are
means over its k updates, each taken before that update.
"""

import dataclasses
import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.models.gan import CONDITIONINGS, GENERATOR_OUTPUTS, Discriminator, Generator, pack
from aigc_jax.models.networks import build_decoder, build_encoder
from aigc_jax.registry import unknown_name_message
from aigc_jax.training import noise
from aigc_jax.training.diff_augment import diff_augment, parse_policy
from aigc_jax.training.family import FAMILIES, Family
from aigc_jax.training.gan_losses import GAN_LOSSES, REGULARIZERS, GANLoss, Regularizer
from aigc_jax.training.state import GANState, TrainState

# Folded into the run key before the step, for every draw other than z (which keeps the
# documented fold_in(fold_in(key, step), i)); far above any step count, so the two never meet.
_AUXILIARY_STREAM = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class GANSetup:
  """What a GAN step needs from `config.model`, checked once."""

  latent_dim: int
  loss: GANLoss
  regularizer: Optional[Regularizer]
  regularizer_weight: float
  augment_policy: Tuple[str, ...]
  pack_size: int
  discriminator_steps: int
  ema_decay: float
  output: str
  num_classes: int  # 0: unconditional.

  @property
  def conditional(self) -> bool:
    return self.num_classes > 0

  def to_model_space(self, images):
    """Data -> the generator's output space: [0, 1] -> [-1, 1] for tanh, as is for linear."""
    return images * 2.0 - 1.0 if self.output == "tanh" else images

  def from_model_space(self, samples):
    return (samples + 1.0) / 2.0 if self.output == "tanh" else samples

  def discriminator_input(self, samples, key):
    """Samples `[N, *S]` -> what the discriminator judges: augmented, then packed."""
    return pack(diff_augment(samples, key, self.augment_policy), self.pack_size)

  def labels(self, batch):
    return batch["label"] if self.conditional else None


def _choice(value, choices, kind):
  if value not in choices:
    raise UnknownNameError(unknown_name_message(kind, value, choices))
  return value


def gan_setup(model_cfg: ml_collections.ConfigDict, sample_shape, num_classes: int) -> GANSetup:
  """Reads the `config.model` section for the GAN family, with the dataset's `num_classes`;
  one-line ConfigErrors for settings that cannot work together (single ranges and batch
  divisibility are `config_rules`')."""
  gan_cfg = model_cfg.gan
  conditioning = _choice(model_cfg.conditioning, CONDITIONINGS, "conditioning")
  regularizer = REGULARIZERS.get(gan_cfg.regularizer)
  if regularizer is not None and model_cfg.encoder.norm != "none":
    raise ConfigError(
      f"model.gan.regularizer={gan_cfg.regularizer!r} needs each example's input gradient to "
      "depend on that example only; set model.encoder.norm='none' (no BatchNorm)."
    )
  pack_size, discriminator_steps = gan_cfg.pack_size, gan_cfg.discriminator_steps
  if pack_size > 1 and conditioning != "none":
    raise ConfigError(
      "PacGAN packing of a conditional GAN is not supported; set "
      "model.gan.pack_size=1 or model.conditioning='none'."
    )
  augment_policy = parse_policy(gan_cfg.diff_augment)
  if augment_policy and len(sample_shape) != 3:
    raise ConfigError(
      f"DiffAugment works on images, but the samples have shape "
      f"{tuple(sample_shape)}; set model.gan.diff_augment=''."
    )
  return GANSetup(
    latent_dim=model_cfg.latent_dim,
    loss=GAN_LOSSES.get(gan_cfg.loss),
    regularizer=regularizer,
    regularizer_weight=float(gan_cfg.regularizer_weight),
    augment_policy=augment_policy,
    pack_size=pack_size,
    discriminator_steps=discriminator_steps,
    ema_decay=float(gan_cfg.ema_decay),
    output=_choice(gan_cfg.generator_output, GENERATOR_OUTPUTS, "generator output"),
    num_classes=num_classes if conditioning != "none" else 0,
  )


def _latents(key, per_device_batch, latent_dim):
  return noise.per_example_normal(
    key, noise.global_example_indices(per_device_batch), (latent_dim,)
  )


def _auxiliary_keys(key, step):
  """Independent per-step keys for the draws other than z."""
  names = ("augment_real", "augment_fake", "augment_generator", "penalty")
  step_key = jax.random.fold_in(jax.random.fold_in(key, _AUXILIARY_STREAM), step)
  return dict(zip(names, jax.random.split(step_key, len(names))))


def _generate_for_training(gen: TrainState, params, z, labels, pack_size: int):
  """G(z) in training mode -> (samples, BatchNorm statistics).

  With packing and a BatchNorm generator, pack slot j (examples j, j + m, ...) is generated
  by its own call, as the PacGAN code calls its generator once per slot; the slots'
  updated running statistics are averaged.
  """
  if pack_size == 1 or not gen.batch_stats:
    return gen.apply_train(params, z, labels)
  slots = [gen.apply_train(params, z[j::pack_size], labels) for j in range(pack_size)]
  samples = jnp.stack([s for s, _ in slots], axis=1)  # [N / m, m, ...]: example p * m + j.
  batch_stats = jax.tree.map(lambda *xs: sum(xs) / pack_size, *[b for _, b in slots])
  return samples.reshape((z.shape[0],) + samples.shape[2:]), batch_stats


def _score_metrics(setup: GANSetup, real_logits, fake_logits, reduce):
  """Per-example discriminator scores reduced by `reduce` (mean, or masked sum)."""
  if setup.loss.probabilities:
    return {
      "d_real": reduce(jax.nn.sigmoid(real_logits)),
      "d_fake": reduce(jax.nn.sigmoid(fake_logits)),
    }
  return {"real_score": reduce(real_logits), "fake_score": reduce(fake_logits)}


def sampling_params(state: GANState):
  """The generator parameters that sampling and evaluation use: the EMA when kept."""
  return state.generator_ema if state.generator_ema else state.generator.params


def _discriminator_update(setup: GANSetup, disc: TrainState, real, fake, labels, keys):
  """One discriminator update on `real` and (constant) `fake` samples -> (disc, metrics)."""
  real_inputs = setup.discriminator_input(real, keys["augment_real"])
  fake_inputs = setup.discriminator_input(fake, keys["augment_fake"])

  def loss_fn(params):
    real_logits, batch_stats = disc.apply_train(params, real_inputs, labels)
    fake_logits, batch_stats = disc.replace(batch_stats=batch_stats).apply_train(
      params, fake_inputs, labels
    )
    metrics = {
      "d_loss": jnp.mean(setup.loss.discriminator(real_logits, fake_logits)),
      **_score_metrics(setup, real_logits, fake_logits, jnp.mean),
    }
    loss = metrics["d_loss"]
    if setup.regularizer is not None:
      variables = disc.replace(batch_stats=batch_stats).variables(params)
      critic = lambda x: disc.apply_fn(variables, x, labels)  # Evaluation mode: no updates.
      metrics["penalty"] = jnp.mean(
        setup.regularizer(critic, real_inputs, fake_inputs, keys["penalty"])
      )
      loss = loss + setup.regularizer_weight * metrics["penalty"]
    return loss, (batch_stats, metrics)

  (_, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(disc.params)
  disc = disc.apply_gradients(grads=jax.lax.pmean(grads, noise.BATCH_AXIS), batch_stats=batch_stats)
  return disc, metrics


def _train_step(state: GANState, batch, key, *, setup: GANSetup):
  gen, disc = state.generator, state.discriminator
  real = setup.to_model_space(batch["image"])
  labels = setup.labels(batch)
  z = _latents(jax.random.fold_in(key, state.step), real.shape[0], setup.latent_dim)
  keys = _auxiliary_keys(key, state.step)

  # One generator forward pass serves both updates: keep its VJP for the generator's update.
  fake, generator_vjp, gen_batch_stats = jax.vjp(
    lambda params: _generate_for_training(gen, params, z, labels, setup.pack_size),
    gen.params,
    has_aux=True,
  )

  # Discriminator update c on chunk c: the examples whose global index is c mod k (rows
  # c::k of every device's block, the same examples whatever the number of devices).
  k = setup.discriminator_steps
  chunk_metrics = []
  for c in range(k):
    chunk_keys = {
      name: jax.random.fold_in(keys[name], c)
      for name in ("augment_real", "augment_fake", "penalty")
    }
    disc, metrics = _discriminator_update(
      setup,
      disc,
      real[c::k],
      jax.lax.stop_gradient(fake[c::k]),
      None if labels is None else labels[c::k],
      chunk_keys,
    )
    chunk_metrics.append(metrics)
  metrics = jax.tree.map(lambda *values: sum(values) / k, *chunk_metrics)

  def generator_loss_fn(samples):
    logits, batch_stats = disc.apply_train(
      disc.params, setup.discriminator_input(samples, keys["augment_generator"]), labels
    )
    return jnp.mean(setup.loss.generator(logits)), batch_stats

  (metrics["g_loss"], disc_batch_stats), fake_grads = jax.value_and_grad(
    generator_loss_fn, has_aux=True
  )(fake)
  (g_grads,) = generator_vjp(fake_grads)
  gen = gen.apply_gradients(
    grads=jax.lax.pmean(g_grads, noise.BATCH_AXIS), batch_stats=gen_batch_stats
  )
  disc = disc.replace(batch_stats=disc_batch_stats)
  ema = state.generator_ema
  if setup.ema_decay:
    ema = optax.incremental_update(gen.params, ema, step_size=1.0 - setup.ema_decay)
  return (
    GANState(generator=gen, discriminator=disc, generator_ema=ema),
    jax.lax.pmean(metrics, noise.BATCH_AXIS),
  )


def _eval_step(state: GANState, batch, key, *, setup: GANSetup):
  """Discriminator and generator losses on test data against fresh samples (no augmentation).

  With packing, a pack counts when all its examples are real (`mask`).
  """
  gen, disc = state.generator, state.discriminator
  real = setup.to_model_space(batch["image"])
  labels = setup.labels(batch)
  z = _latents(key, real.shape[0], setup.latent_dim)
  fake = gen.apply_fn(gen.variables(sampling_params(state)), z, labels)
  real_logits = disc.apply_fn(disc.variables(), pack(real, setup.pack_size), labels)
  fake_logits = disc.apply_fn(disc.variables(), pack(fake, setup.pack_size), labels)
  mask = jnp.min(batch["mask"].reshape((-1, setup.pack_size)), axis=1)
  masked_sum = lambda values: jnp.sum(mask * values)
  sums = {
    "d_loss": masked_sum(setup.loss.discriminator(real_logits, fake_logits)),
    "g_loss": masked_sum(setup.loss.generator(fake_logits)),
    **_score_metrics(setup, real_logits, fake_logits, masked_sum),
    "weight": jnp.sum(mask),
  }
  return jax.lax.psum(sums, noise.BATCH_AXIS)


def make_gan_family(
  model_cfg: ml_collections.ConfigDict,
  sample_shape,
  *,
  num_classes: int,
  optimizer: optax.GradientTransformation,
) -> Family:
  """The GAN of the `config.model` section `model_cfg`; both networks train with `optimizer`.

  Batches hold whole packs and discriminator chunks on every device
  (`config_rules.check_batch_sizes`).
  """
  setup = gan_setup(model_cfg, sample_shape, num_classes)
  spectral_norm = bool(model_cfg.gan.spectral_norm)
  projection = model_cfg.conditioning == "projection"
  feature_dim = model_cfg.encoder.widths[-1] if projection else 0
  generator = Generator(
    build_decoder(
      model_cfg.decoder,
      sample_shape,
      noise.BATCH_AXIS,
      compute_dtype=model_cfg.compute_dtype,
      conv_impl=model_cfg.conv_impl,
    ),
    output=setup.output,
    num_classes=setup.num_classes,
  )
  discriminator = Discriminator(
    build_encoder(
      model_cfg.encoder,
      feature_dim if projection else 1,
      noise.BATCH_AXIS,
      spectral_norm=spectral_norm,
      compute_dtype=model_cfg.compute_dtype,
      conv_impl=model_cfg.conv_impl,
    ),
    conditioning=model_cfg.conditioning,
    num_classes=setup.num_classes,
    feature_dim=feature_dim,
    spectral_norm=spectral_norm,
  )
  packed_shape = tuple(sample_shape[:-1]) + (setup.pack_size * sample_shape[-1],)
  init_labels = jnp.zeros((1,), jnp.int32) if setup.conditional else None

  def init(key):
    gen_key, disc_key = jax.random.split(key)
    gen_vars = generator.init(gen_key, jnp.zeros((1, setup.latent_dim)), init_labels, train=False)
    disc_vars = discriminator.init(
      disc_key, jnp.zeros((1,) + packed_shape), init_labels, train=False
    )

    def make_state(module, variables):
      return TrainState.create(
        apply_fn=module.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=optimizer,
      )

    gen_state = make_state(generator, gen_vars)
    return GANState(
      generator=gen_state,
      discriminator=make_state(discriminator, disc_vars),
      generator_ema=gen_state.params if setup.ema_decay else {},
    )

  def generate(state, key, num, labels=None):
    """`num` samples; a conditional GAN makes classes `labels`, default arange(num) % K."""
    z = jax.random.normal(key, (num, setup.latent_dim))
    if not setup.conditional:
      labels = None
    elif labels is None:
      labels = jnp.arange(num, dtype=jnp.int32) % setup.num_classes
    gen = state.generator
    return setup.from_model_space(gen.apply_fn(gen.variables(sampling_params(state)), z, labels))

  return Family(
    init=init,
    train_step=functools.partial(_train_step, setup=setup),
    eval_step=functools.partial(_eval_step, setup=setup),
    generate=jax.jit(generate, static_argnums=2),
    reconstruct=None,
    conditional=setup.conditional,
  )


FAMILIES.register("gan")(make_gan_family)
