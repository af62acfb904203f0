"""The autoencoder and VAE families: losses, steps, reconstruction and sampling.

VAE loss (per example, nats): -ELBO = -log p(x | z) + beta * KL(q(z | x) || N(0, I)), with
KL = 0.5 * sum(mean^2 + exp(logvar) - 1 - logvar). AE loss: -log p(x | dec(enc(x))) under the
same likelihood. Losses are averaged over the global batch.
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections

from aigc_jax.models.autoencoder import Autoencoder
from aigc_jax.models.likelihoods import get_likelihood
from aigc_jax.models.networks import build_decoder, build_encoder
from aigc_jax.models.vae import VAE
from aigc_jax.training import noise, steps
from aigc_jax.training.family import FAMILIES, Family
from aigc_jax.training.optimizers import build_optimizer
from aigc_jax.training.state import TrainState


def gaussian_kl(mean, logvar):
  """KL(N(mean, exp(logvar)) || N(0, I)) per example, `[B, L] -> [B]` nats."""
  return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def _per_example_terms(model_cfg, likelihood, variational, state, params, batch, key, train):
  """Per-example loss terms `{name: [B]}` and the updated batch_stats."""
  latent_dim = model_cfg.latent_dim
  images = batch["image"]
  if variational:
    indices = noise.global_example_indices(images.shape[0])
    eps = noise.per_example_normal(key, indices, (latent_dim,))
    if train:
      (outputs, mean, logvar), batch_stats = state.apply_train(params, images, eps)
    else:
      outputs, mean, logvar = state.apply_fn(state.variables(), images, eps)
      batch_stats = state.batch_stats
    reconstruction = likelihood.nll(outputs, images)
    kl = gaussian_kl(mean, logvar)
    terms = {"loss": reconstruction + model_cfg.beta * kl,
             "reconstruction_nll": reconstruction, "kl": kl}
  else:
    if train:
      outputs, batch_stats = state.apply_train(params, images)
    else:
      outputs, batch_stats = state.apply_fn(state.variables(), images), state.batch_stats
    terms = {"loss": likelihood.nll(outputs, images)}
  mean_image = likelihood.mean(outputs)
  terms["mse"] = jnp.mean(jnp.square(mean_image - images), axis=(1, 2, 3))
  return terms, batch_stats


def _make_family(config: ml_collections.ConfigDict, image_shape, variational: bool) -> Family:
  model_cfg = config.model
  likelihood = get_likelihood(model_cfg.likelihood, model_cfg.likelihood_scale)
  code_size = 2 * model_cfg.latent_dim if variational else model_cfg.latent_dim
  encoder = build_encoder(model_cfg.encoder, code_size, noise.BATCH_AXIS)
  decoder = build_decoder(model_cfg.decoder, image_shape, noise.BATCH_AXIS)
  model = (VAE if variational else Autoencoder)(encoder=encoder, decoder=decoder)
  optimizer = build_optimizer(config.optimizer, config.train.num_steps)
  terms_fn = functools.partial(_per_example_terms, model_cfg, likelihood, variational)

  def init(key):
    images = jnp.zeros((1,) + image_shape, jnp.float32)
    args = (images, jnp.zeros((1, model_cfg.latent_dim))) if variational else (images,)
    variables = model.init(key, *args, train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             batch_stats=variables.get("batch_stats", {}), tx=optimizer)

  def reconstruct(state, images, key, labels=None):
    del labels  # Unconditional.
    if variational:  # The posterior mean: reconstructions shown and scored are deterministic.
      mean, _ = model.apply(state.variables(), images, method=VAE.encode)
      outputs = model.apply(state.variables(), mean, method=VAE.decode)
    else:
      outputs = state.apply_fn(state.variables(), images)
    del key
    return likelihood.mean(outputs)

  def generate(state, key, num, labels=None):
    del labels  # Unconditional.
    z = jax.random.normal(key, (num, model_cfg.latent_dim))
    return likelihood.mean(model.apply(state.variables(), z, method=VAE.decode))

  return Family(
      init=init,
      train_step=functools.partial(steps.mean_loss_train_step, terms_fn=terms_fn),
      eval_step=functools.partial(steps.masked_eval_step, terms_fn=terms_fn),
      generate=jax.jit(generate, static_argnums=2) if variational else None,
      reconstruct=jax.jit(reconstruct))


FAMILIES.register("ae")(functools.partial(_make_family, variational=False))
FAMILIES.register("vae")(functools.partial(_make_family, variational=True))
