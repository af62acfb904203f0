"""The autoencoder and VAE families and their variants: losses, steps, reconstruction, sampling.

VAE loss (per example, nats): -ELBO = -log p(x | z) + beta * KL(q(z | x) || N(0, I)), with
KL = 0.5 * sum(mean^2 + exp(logvar) - 1 - logvar) and z = mean + exp(logvar / 2) * eps.
AE loss: -log p(x | dec(enc(x))) under the same likelihood. Losses are averaged over the
global batch. Example i's noise at a step comes from `fold_in(fold_in(train_key, step), i)`
(`training.noise`): the VAE's eps_i = normal(that key, [latent_dim]), the denoising AE's
corruption of x_i is drawn from that key.

Variants, each set by config keys (defaults give the plain families):
- beta-VAE (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a Constrained
  Variational Framework"): `model.beta` != 1.
- KL warm-up (Bowman et al. 2016, "Generating Sentences from a Continuous Space"; Sønderby et
  al. 2016, "Ladder Variational Autoencoders"): the KL weight of training step t (t = the
  state's step before the update, 0 first) is
  beta_t = start + (beta - start) * min(t / model.kl_warmup_steps, 1), start =
  `model.kl_warmup_start`. It is read from the state's step, so a resumed run continues the
  schedule. Training logs it as the metric "beta"; evaluation uses `model.beta` throughout, so
  evaluation losses of different steps compare.
- Denoising AE (Vincent et al. 2008): `model.corruption` / `model.corruption_level`
  (`training.corruptions`): in training the encoder sees a corrupted x~ and the loss is
  -log p(x | dec(enc(x~))), scored against the CLEAN x; evaluation and `reconstruct` use
  clean inputs.
- Class-conditional VAE (Sohn et al. 2015, "Learning Structured Output Representation using
  Deep Conditional Generative Models"; the AE likewise): `model.conditioning = "concat"`: the
  one-hot label is joined to the encoder's input and to the decoder's latent;
  q(z | x, y), p(x | z, y), prior N(0, I).
- Unbounded data (2-D points): `model.output_range = "unbounded"` leaves the Gaussian
  likelihood's mean unclipped; "unit" (default) clips it to the [0, 1] of images.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.models.autoencoder import Autoencoder
from aigc_jax.models.likelihoods import flatten_features, get_likelihood
from aigc_jax.models.networks import build_decoder, build_encoder
from aigc_jax.models.vae import VAE
from aigc_jax.registry import unknown_name_message
from aigc_jax.training import corruptions, noise, steps
from aigc_jax.training.family import FAMILIES, Family
from aigc_jax.training.state import TrainState

CONDITIONINGS = ("none", "concat")  # "projection" is a discriminator's: GAN only.
OUTPUT_RANGES = ("unit", "unbounded")


def gaussian_kl(mean, logvar):
  """KL(N(mean, exp(logvar)) || N(0, I)) per example, `[B, L] -> [B]` nats."""
  return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def kl_weight_schedule(model_cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """beta as a function of the step: the KL warm-up ramp, or the constant `model.beta`."""
  if model_cfg.kl_warmup_steps > 0:
    return optax.linear_schedule(
      model_cfg.kl_warmup_start, model_cfg.beta, model_cfg.kl_warmup_steps
    )
  return optax.constant_schedule(model_cfg.beta)


def _check_variant_config(
  model_cfg: ml_collections.ConfigDict, variational: bool, likelihood
) -> None:
  """One-line errors for variant settings that cannot work together (single ranges are
  `config_rules.RULES`')."""
  family = model_cfg.family
  if model_cfg.conditioning == "projection":
    raise ConfigError(
      f"model.conditioning='projection' is a GAN discriminator's (Miyato & Koyama 2018); "
      f"use 'concat' for the {family} family."
    )
  if model_cfg.conditioning not in CONDITIONINGS:
    raise UnknownNameError(
      unknown_name_message("conditioning", model_cfg.conditioning, CONDITIONINGS)
    )
  if model_cfg.output_range not in OUTPUT_RANGES:
    raise UnknownNameError(
      unknown_name_message("output range", model_cfg.output_range, OUTPUT_RANGES)
    )
  if model_cfg.output_range == "unbounded" and likelihood.needs_unit_interval:
    raise ConfigError(
      f"model.likelihood={model_cfg.likelihood!r} models data in [0, 1] only; use "
      "model.likelihood='gaussian' with model.output_range='unbounded'."
    )
  if not variational and model_cfg.kl_warmup_steps > 0:
    raise ConfigError(
      "model.kl_warmup_steps anneals the KL weight of the vae family; set it "
      "to 0 for the ae family."
    )
  corruptions.CORRUPTIONS.get(model_cfg.corruption)  # Unknown names list the choices.
  if model_cfg.corruption != "none":
    if variational:
      raise ConfigError(
        "model.corruption (the denoising autoencoder) applies to the ae family; "
        "set model.corruption='none' for the vae family."
      )
    level = model_cfg.corruption_level
    bounded = model_cfg.corruption in ("masking", "salt_and_pepper")
    if not (0 < level <= 1 if bounded else level > 0):
      raise ConfigError(
        f"model.corruption_level must be in {'(0, 1]' if bounded else '(0, inf)'} for "
        f"model.corruption={model_cfg.corruption!r}, got {level}."
      )


def _make_family(
  model_cfg: ml_collections.ConfigDict,
  sample_shape,
  variational: bool,
  num_classes: int,
  optimizer: optax.GradientTransformation,
) -> Family:
  likelihood = get_likelihood(model_cfg.likelihood, model_cfg.likelihood_scale)
  _check_variant_config(model_cfg, variational, likelihood)
  conditional = model_cfg.conditioning == "concat"
  num_classes = num_classes if conditional else 0
  latent_dim = model_cfg.latent_dim
  encoder = build_encoder(
    model_cfg.encoder,
    2 * latent_dim if variational else latent_dim,
    noise.BATCH_AXIS,
    compute_dtype=model_cfg.compute_dtype,
    conv_impl=model_cfg.conv_impl,
  )
  decoder = build_decoder(
    model_cfg.decoder,
    sample_shape,
    noise.BATCH_AXIS,
    compute_dtype=model_cfg.compute_dtype,
    conv_impl=model_cfg.conv_impl,
  )
  model_cls = VAE if variational else Autoencoder
  model = model_cls(encoder=encoder, decoder=decoder)
  kl_weight = kl_weight_schedule(model_cfg)

  def output_mean(outputs):
    """The likelihood's mean of decoder outputs `[B, *sample_shape]`, in the data's range."""
    mean = flatten_features(likelihood.mean(outputs))  # Vectorised: see flatten_features.
    mean = jnp.clip(mean, 0.0, 1.0) if model_cfg.output_range == "unit" else mean
    return mean.reshape(outputs.shape)

  def condition(labels):
    """One-hot `[B, K]` of int labels `[B]`, or None for the unconditional families."""
    return jax.nn.one_hot(labels, num_classes) if conditional else None

  def terms_fn(state, params, batch, key, train):
    """Per-example loss terms `{name: [B]}` and the updated batch_stats."""
    images = batch["image"]
    onehot = condition(batch["label"])

    def apply(*args):
      if train:
        return state.apply_train(params, *args)
      return state.apply_fn(state.variables(), *args), state.batch_stats

    if variational:
      eps = noise.per_example_normal(
        key, noise.global_example_indices(images.shape[0]), (latent_dim,)
      )
      (outputs, mean, logvar), batch_stats = apply(images, eps, onehot)
      beta = kl_weight(state.step) if train else model_cfg.beta
      reconstruction = likelihood.nll(outputs, images)
      kl = gaussian_kl(mean, logvar)
      terms = {"loss": reconstruction + beta * kl, "reconstruction_nll": reconstruction, "kl": kl}
      if train and model_cfg.kl_warmup_steps > 0:
        terms["beta"] = jnp.full(images.shape[:1], beta)
    else:
      inputs = (
        corruptions.corrupt_batch(model_cfg.corruption, model_cfg.corruption_level, key, images)
        if train
        else images
      )
      outputs, batch_stats = apply(inputs, onehot)
      terms = {"loss": likelihood.nll(outputs, images)}  # Scored against the clean input.
    # The VAE's is a reconstruction from a sampled code, not the posterior mean's that
    # experiments.evaluate reports as `mse`: a different number, so another name.
    mse_name = "mse_sampled_code" if variational else "mse"
    terms[mse_name] = jnp.mean(
      jnp.square(flatten_features(output_mean(outputs)) - flatten_features(images)), axis=-1
    )
    return terms, batch_stats

  def init(key):
    inputs = jnp.zeros((1,) + tuple(sample_shape), jnp.float32)
    onehot = jnp.zeros((1, num_classes)) if conditional else None
    args = (inputs, jnp.zeros((1, latent_dim)), onehot) if variational else (inputs, onehot)
    variables = model.init(key, *args, train=False)
    return TrainState.create(
      apply_fn=model.apply,
      params=variables["params"],
      batch_stats=variables.get("batch_stats", {}),
      tx=optimizer,
    )

  def deterministic_code(state, images, onehot):
    """The code `[N, latent_dim]` (the VAE's posterior mean) and its KL (0 for the AE)."""
    code = model.apply(state.variables(), images, onehot, method=model_cls.encode)
    if not variational:
      return code, 0.0
    mean, logvar = code
    return mean, gaussian_kl(mean, logvar)

  def deterministic_reconstruction(state, images, onehot):
    """Decoder outputs of the deterministic code, and the code's KL."""
    code, kl = deterministic_code(state, images, onehot)
    return model.apply(state.variables(), code, onehot, method=model_cls.decode), kl

  def most_likely_labels(state, images):
    """Per image, the class whose deterministic reconstruction scores best:
    argmax_y -(nll(x | y) + beta * KL(y)), Bayes' rule under a uniform class prior."""

    def score(label):
      onehot = condition(jnp.full(images.shape[:1], label))
      outputs, kl = deterministic_reconstruction(state, images, onehot)
      return -(likelihood.nll(outputs, images) + model_cfg.beta * kl)

    return jnp.argmax(jnp.stack([score(y) for y in range(num_classes)], axis=-1), axis=-1)

  def reconstruct(state, images, key, labels=None):
    """Means of the deterministic reconstructions (the VAE decodes its posterior mean).

    Conditional families reconstruct under `labels [N]`; with None, under each image's most
    likely class by the model itself (`most_likely_labels`).
    """
    del key
    if conditional and labels is None:
      labels = most_likely_labels(state, images)
    outputs, _ = deterministic_reconstruction(
      state, images, condition(labels) if conditional else None
    )
    return output_mean(outputs)

  def encode(state, images, labels=None):
    """The deterministic codes `[N, latent_dim]` (the VAE's posterior means)."""
    return deterministic_code(state, images, condition(labels))[0]

  def decode(state, codes, labels=None):
    """Likelihood means `[N, *sample_shape]` of codes `[N, latent_dim]`."""
    return output_mean(
      model.apply(state.variables(), codes, condition(labels), method=model_cls.decode)
    )

  def generate(state, key, num, labels=None):
    """`num` decoded prior samples; conditional: of `labels [num]` (None: arange(num) % K)."""
    if conditional and labels is None:
      labels = jnp.arange(num) % num_classes
    return decode(state, jax.random.normal(key, (num, latent_dim)), labels)

  def train_step(state, batch, key):
    return steps.mean_loss_train_step(state, batch, key, terms_fn=terms_fn)

  def eval_step(state, batch, key):
    return steps.masked_eval_step(state, batch, key, terms_fn=terms_fn)

  return Family(
    init=init,
    train_step=train_step,
    eval_step=eval_step,
    generate=jax.jit(generate, static_argnums=2) if variational else None,
    reconstruct=jax.jit(reconstruct),
    conditional=conditional,
    encode=jax.jit(encode),
    decode=jax.jit(decode),
  )


def make_ae_family(
  model: ml_collections.ConfigDict,
  sample_shape,
  *,
  num_classes: int,
  optimizer: optax.GradientTransformation,
) -> Family:
  """The (denoising, conditional) autoencoder of the `config.model` section `model`."""
  return _make_family(model, sample_shape, False, num_classes, optimizer)


def make_vae_family(
  model: ml_collections.ConfigDict,
  sample_shape,
  *,
  num_classes: int,
  optimizer: optax.GradientTransformation,
) -> Family:
  """The VAE of the `config.model` section `model` (beta, KL warm-up, conditional)."""
  return _make_family(model, sample_shape, True, num_classes, optimizer)


FAMILIES.register("ae")(make_ae_family)
FAMILIES.register("vae")(make_vae_family)
