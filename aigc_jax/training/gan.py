"""The GAN family: non-saturating loss (Goodfellow et al., 2014), both updates in one step.

Discriminator loss: softplus(-D(x)) + softplus(D(G(z))), i.e. -log sigmoid(D(x)) -
log(1 - sigmoid(D(G(z)))). Generator loss (non-saturating): softplus(-D(G(z))). The
discriminator is updated first; the generator's update then uses the updated discriminator
(the order of the DCGAN reference loop). Real images are mapped from [0, 1] to [-1, 1].
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections

from aigc_jax.models.gan import Discriminator, Generator
from aigc_jax.models.networks import build_decoder, build_encoder
from aigc_jax.training import noise
from aigc_jax.training.family import FAMILIES, Family
from aigc_jax.training.optimizers import build_optimizer
from aigc_jax.training.state import GANState, TrainState


def _discriminator_loss(real_logits, fake_logits):
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def _latents(key, per_device_batch, latent_dim):
  return noise.per_example_normal(
      key, noise.global_example_indices(per_device_batch), (latent_dim,))


def _train_step(state: GANState, batch, key, *, latent_dim):
  gen, disc = state.generator, state.discriminator
  real = batch["image"] * 2.0 - 1.0
  z = _latents(jax.random.fold_in(key, state.step), real.shape[0], latent_dim)

  # One generator forward pass serves both updates: keep its VJP for the generator's update.
  fake, generator_vjp, gen_batch_stats = jax.vjp(
      lambda params: gen.apply_train(params, z), gen.params, has_aux=True)

  def discriminator_loss_fn(params):
    real_logits, batch_stats = disc.apply_train(params, real)
    fake_logits, batch_stats = disc.replace(batch_stats=batch_stats).apply_train(
        params, jax.lax.stop_gradient(fake))
    loss = _discriminator_loss(real_logits, fake_logits)
    return loss, (batch_stats, real_logits, fake_logits)

  (d_loss, (disc_batch_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
      discriminator_loss_fn, has_aux=True)(disc.params)
  disc = disc.apply_gradients(grads=jax.lax.pmean(d_grads, noise.BATCH_AXIS),
                              batch_stats=disc_batch_stats)

  def generator_loss_fn(fake_images):
    logits, batch_stats = disc.apply_train(disc.params, fake_images)
    return jnp.mean(jax.nn.softplus(-logits)), batch_stats

  (g_loss, disc_batch_stats), fake_grads = jax.value_and_grad(
      generator_loss_fn, has_aux=True)(fake)
  (g_grads,) = generator_vjp(fake_grads)
  gen = gen.apply_gradients(grads=jax.lax.pmean(g_grads, noise.BATCH_AXIS),
                            batch_stats=gen_batch_stats)
  disc = disc.replace(batch_stats=disc_batch_stats)
  metrics = {"d_loss": d_loss, "g_loss": g_loss,
             "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
             "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}
  return GANState(generator=gen, discriminator=disc), jax.lax.pmean(metrics, noise.BATCH_AXIS)


def _eval_step(state: GANState, batch, key, *, latent_dim):
  """Discriminator and generator losses on test images against fresh samples."""
  gen, disc = state.generator, state.discriminator
  real = batch["image"] * 2.0 - 1.0
  fake = gen.apply_fn(gen.variables(), _latents(key, real.shape[0], latent_dim))
  real_logits = disc.apply_fn(disc.variables(), real)
  fake_logits = disc.apply_fn(disc.variables(), fake)
  mask = batch["mask"]
  sums = {
      "d_loss": jnp.sum(mask * (jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits))),
      "g_loss": jnp.sum(mask * jax.nn.softplus(-fake_logits)),
      "d_real": jnp.sum(mask * jax.nn.sigmoid(real_logits)),
      "d_fake": jnp.sum(mask * jax.nn.sigmoid(fake_logits)),
      "weight": jnp.sum(mask),
  }
  return jax.lax.psum(sums, noise.BATCH_AXIS)


def make_gan_family(config: ml_collections.ConfigDict, image_shape) -> Family:
  model_cfg = config.model
  latent_dim = model_cfg.latent_dim
  generator = Generator(build_decoder(model_cfg.decoder, image_shape, noise.BATCH_AXIS))
  discriminator = Discriminator(build_encoder(model_cfg.encoder, 1, noise.BATCH_AXIS))
  optimizer = build_optimizer(config.optimizer, config.train.num_steps)

  def init(key):
    gen_key, disc_key = jax.random.split(key)
    gen_vars = generator.init(gen_key, jnp.zeros((1, latent_dim)), train=False)
    disc_vars = discriminator.init(disc_key, jnp.zeros((1,) + image_shape), train=False)

    def make_state(module, variables):
      return TrainState.create(
          apply_fn=module.apply, params=variables["params"],
          batch_stats=variables.get("batch_stats", {}),
          tx=optimizer)

    return GANState(generator=make_state(generator, gen_vars),
                    discriminator=make_state(discriminator, disc_vars))

  def generate(state, key, num, labels=None):
    del labels  # Unconditional.
    z = jax.random.normal(key, (num, latent_dim))
    return (state.generator.apply_fn(state.generator.variables(), z) + 1.0) / 2.0

  return Family(
      init=init,
      train_step=functools.partial(_train_step, latent_dim=latent_dim),
      eval_step=functools.partial(_eval_step, latent_dim=latent_dim),
      generate=jax.jit(generate, static_argnums=2),
      reconstruct=None)


FAMILIES.register("gan")(make_gan_family)
