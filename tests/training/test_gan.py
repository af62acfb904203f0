"""One GAN train step recomputed independently: numpy, float64, the same fixed noise.

The step's contract: z_i = normal(fold_in(fold_in(key, step), i)) for example i of the global
batch; real images mapped [0, 1] -> [-1, 1]; the discriminator is updated first on
softplus(-D(x)) + softplus(D(G(z))); the generator is then updated on the non-saturating loss
softplus(-D'(G(z))) against the UPDATED discriminator D'. With plain SGD each update is
params - lr * grad, so both networks' new parameters are known exactly.
"""

import jax
import numpy as np
import pytest

from aigc_jax.training import diff_augment, gan
from tests.training import helpers
from tests.training.test_diff_augment import translate_reference

IMAGE_SHAPE = (2, 2, 1)
LATENT_DIM = 3
GLOBAL_BATCH = 8
LEARNING_RATE = 0.1


def _softplus(x):
  return np.logaddexp(0.0, x)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def layers_of(params, group):
  """[(kernel, bias), ...] of an MLP body's Dense_0, Dense_1, ... in float64."""
  dense = params[group]
  return [
    (
      np.asarray(dense[f"Dense_{i}"]["kernel"], np.float64),
      np.asarray(dense[f"Dense_{i}"]["bias"], np.float64),
    )
    for i in range(len(dense))
  ]


def _forward(layers, x):
  """ReLU MLP with a linear last layer; returns (inputs of each layer, pre-activations)."""
  inputs, pre = [x], []
  for i, (kernel, bias) in enumerate(layers):
    h = inputs[-1] @ kernel + bias
    pre.append(h)
    if i < len(layers) - 1:
      inputs.append(np.maximum(h, 0.0))
  return inputs, pre


def _backward(layers, inputs, pre, grad_out):
  """Gradients [(d kernel, d bias), ...] and d input, by hand."""
  grads, g = [None] * len(layers), grad_out
  for i in reversed(range(len(layers))):
    if i < len(layers) - 1:
      g = g * (pre[i] > 0)
    grads[i] = (inputs[i].T @ g, g.sum(axis=0))
    g = g @ layers[i][0].T
  return grads, g


def _sgd(layers, grads):
  return [
    (k - LEARNING_RATE * dk, b - LEARNING_RATE * db) for (k, b), (dk, db) in zip(layers, grads)
  ]


def reference_step(gen_layers, disc_layers, images, z):
  """One non-saturating GAN step in float64; returns (d_loss, g_loss, new gen, new disc)."""
  n = images.shape[0]
  real = images.reshape(n, -1) * 2.0 - 1.0
  g_inputs, g_pre = _forward(gen_layers, z)
  fake = np.tanh(g_pre[-1])

  # Discriminator: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), batch means.
  r_inputs, r_pre = _forward(disc_layers, real)
  f_inputs, f_pre = _forward(disc_layers, fake)
  real_logits, fake_logits = r_pre[-1][:, 0], f_pre[-1][:, 0]
  d_loss = np.mean(_softplus(-real_logits)) + np.mean(_softplus(fake_logits))
  real_grads, _ = _backward(disc_layers, r_inputs, r_pre, (-_sigmoid(-real_logits) / n)[:, None])
  fake_grads, _ = _backward(disc_layers, f_inputs, f_pre, (_sigmoid(fake_logits) / n)[:, None])
  new_disc = _sgd(disc_layers, [(a[0] + b[0], a[1] + b[1]) for a, b in zip(real_grads, fake_grads)])

  # Generator: -log sigmoid(D'(G(z))) with the updated discriminator D'.
  u_inputs, u_pre = _forward(new_disc, fake)
  logits = u_pre[-1][:, 0]
  g_loss = np.mean(_softplus(-logits))
  _, d_fake = _backward(new_disc, u_inputs, u_pre, (-_sigmoid(-logits) / n)[:, None])
  gen_grads, _ = _backward(gen_layers, g_inputs, g_pre, d_fake * (1.0 - fake**2))
  return d_loss, g_loss, _sgd(gen_layers, gen_grads), new_disc


def assert_parameters(state, new_gen, new_disc):
  """Both networks' parameters (MLP bodies) equal the reference's, layer by layer."""
  got = layers_of(state.discriminator.params, "encoder") + layers_of(
    state.generator.params, "decoder"
  )
  for i, ((kernel, bias), (want_kernel, want_bias)) in enumerate(zip(got, new_disc + new_gen)):
    np.testing.assert_allclose(kernel, want_kernel, rtol=1e-4, atol=2e-6, err_msg=f"layer {i}")
    np.testing.assert_allclose(bias, want_bias, rtol=1e-4, atol=2e-6, err_msg=f"layer {i}")


def tiny_gan_config():
  config = helpers.tiny_config("gan", "mlp")
  config.model.latent_dim = LATENT_DIM
  config.model.encoder.widths = (6,)
  config.model.decoder.widths = (5,)
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = LEARNING_RATE
  config.train.batch_size = GLOBAL_BATCH
  return config


def contract_latents(train_key, step, num):
  """z_i = normal(fold_in(fold_in(train_key, step), i)), float64 `[num, LATENT_DIM]`."""
  step_key = jax.random.fold_in(train_key, step)
  return np.stack(
    [
      np.asarray(jax.random.normal(jax.random.fold_in(step_key, i), (LATENT_DIM,)), np.float64)
      for i in range(num)
    ]
  )


def test_one_step_matches_an_independent_float64_recomputation():
  config = tiny_gan_config()
  batches = helpers.random_batches(1, GLOBAL_BATCH, shape=IMAGE_SHAPE, seed=3)
  initial = helpers.initial_state(config, IMAGE_SHAPE)
  # 4 devices: the per-device step must average exactly as one global batch would.
  state, metrics = helpers.run_steps(config, batches, helpers.pmap_on(4))

  z = contract_latents(jax.random.PRNGKey(1), 0, GLOBAL_BATCH)  # run_steps trains with key 1.
  d_loss, g_loss, new_gen, new_disc = reference_step(
    layers_of(initial.generator.params, "decoder"),
    layers_of(initial.discriminator.params, "encoder"),
    np.asarray(batches[0]["image"], np.float64),
    z,
  )

  np.testing.assert_allclose(metrics[0]["d_loss"], d_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics[0]["g_loss"], g_loss, rtol=1e-5)
  for name, got, want in (
    ("discriminator", layers_of(state.discriminator.params, "encoder"), new_disc),
    ("generator", layers_of(state.generator.params, "decoder"), new_gen),
  ):
    for i, ((kernel, bias), (want_kernel, want_bias)) in enumerate(zip(got, want)):
      np.testing.assert_allclose(
        kernel, want_kernel, rtol=1e-4, atol=1e-6, err_msg=f"{name} Dense_{i} kernel"
      )
      np.testing.assert_allclose(
        bias, want_bias, rtol=1e-4, atol=1e-6, err_msg=f"{name} Dense_{i} bias"
      )
  # The step moved both networks by more than the tolerance: the comparison has teeth.
  moved = [
    np.max(np.abs(k - k0))
    for (k, _), (k0, _) in zip(
      new_gen + new_disc,
      layers_of(initial.generator.params, "decoder")
      + layers_of(initial.discriminator.params, "encoder"),
    )
  ]
  assert min(moved) > 1e-4, moved


# ------------------------------------------------ losses and regularisers: the whole step

NUMPY_LOSSES = {  # (discriminator terms of (real, fake) logits, generator terms of fake logits)
  "non_saturating": (lambda r, f: _softplus(-r) + _softplus(f), lambda f: _softplus(-f)),
  "hinge": (lambda r, f: np.maximum(1.0 - r, 0.0) + np.maximum(1.0 + f, 0.0), lambda f: -f),
  "wasserstein": (lambda r, f: f - r, lambda f: -f),
}


def _logits(layers, x):
  return _forward(layers, x)[1][-1][:, 0]


def _input_gradients(layers, x):
  """d D(x)_i / d x_i `[n, d]` by hand."""
  inputs, pre = _forward(layers, x)
  return _backward(layers, inputs, pre, np.ones((x.shape[0], 1)))[1]


def _flatten(layers):
  return np.concatenate([np.concatenate([k.ravel(), b.ravel()]) for k, b in layers])


def _unflatten(vector, like):
  layers, offset = [], 0
  for kernel, bias in like:
    k = vector[offset : offset + kernel.size].reshape(kernel.shape)
    offset += kernel.size
    layers.append((k, vector[offset : offset + bias.size]))
    offset += bias.size
  return layers


def _finite_difference_sgd(loss_fn, layers, step=1e-6):
  """SGD update of `layers` with the central-difference gradient of `loss_fn(layers)`."""
  flat = _flatten(layers)
  grad = np.zeros_like(flat)
  for j in range(flat.size):
    up, down = flat.copy(), flat.copy()
    up[j] += step
    down[j] -= step
    grad[j] = (loss_fn(_unflatten(up, layers)) - loss_fn(_unflatten(down, layers))) / (2 * step)
  return _unflatten(flat - LEARNING_RATE * grad, layers)


def _identity(x):
  return x


def reference_variant_step(
  gen_layers,
  disc_layers,
  images,
  z,
  loss,
  regularizer,
  weight,
  eps,
  augment_real=_identity,
  augment_fake=_identity,
  augment_generator=_identity,
  output="tanh",
  discriminator_steps=1,
):
  """One GAN step of any loss / regulariser in float64, gradients by central differences.

  `augment_*`: the fixed transforms of the discriminator's inputs `[n, pixels]` (real and
  fake in its loss, fake in the generator's). `output` "tanh": images in [0, 1] mapped to
  [-1, 1] and a tanh generator; "linear": neither. With k `discriminator_steps`, update c
  uses examples c, c + k, ... and `eps[c]`, its interpolation weights. Returns (mean
  adversarial d_loss, mean penalty, g_loss, new gen, new disc).
  """
  d_terms, g_terms = NUMPY_LOSSES[loss]
  squash = np.tanh if output == "tanh" else _identity
  real = images.reshape(images.shape[0], -1)
  real = augment_real(real * 2.0 - 1.0 if output == "tanh" else real)
  fake = augment_fake(squash(_forward(gen_layers, z)[1][-1]))

  def penalty_of(disc, real, fake, eps):
    if regularizer == "gradient_penalty":  # Gulrajani et al. 2017.
      interpolates = eps[:, None] * real + (1.0 - eps[:, None]) * fake
      norms = np.linalg.norm(_input_gradients(disc, interpolates), axis=1)
      return np.mean((norms - 1.0) ** 2)
    if regularizer == "r1":  # Mescheder et al. 2018, gamma / 2 * |grad|^2 with gamma = weight.
      return np.mean(0.5 * np.sum(_input_gradients(disc, real) ** 2, axis=1))
    return 0.0

  adversarial = lambda disc, real, fake: np.mean(d_terms(_logits(disc, real), _logits(disc, fake)))
  k, new_disc, d_losses, penalties = discriminator_steps, disc_layers, [], []
  for c in range(k):
    chunk = (real[c::k], fake[c::k], None if eps is None else eps[c])
    d_losses.append(adversarial(new_disc, *chunk[:2]))
    penalties.append(penalty_of(new_disc, *chunk))
    new_disc = _finite_difference_sgd(
      lambda disc, chunk=chunk: adversarial(disc, *chunk[:2]) + weight * penalty_of(disc, *chunk),
      new_disc,
    )
  g_loss = lambda gen: np.mean(
    g_terms(_logits(new_disc, augment_generator(squash(_forward(gen, z)[1][-1]))))
  )
  new_gen = _finite_difference_sgd(g_loss, gen_layers)
  return np.mean(d_losses), np.mean(penalties), g_loss(gen_layers), new_gen, new_disc


def _interpolation_weights(train_key, discriminator_steps):
  """eps of discriminator update c, example j of its chunk: U[0, 1) from
  fold_in(fold_in(penalty stream, c), j)."""
  penalty = gan._auxiliary_keys(train_key, 0)["penalty"]
  chunk = GLOBAL_BATCH // discriminator_steps
  return [
    np.array(
      [
        float(jax.random.uniform(jax.random.fold_in(jax.random.fold_in(penalty, c), j)))
        for j in range(chunk)
      ]
    )
    for c in range(discriminator_steps)
  ]


@pytest.mark.parametrize(
  "loss,regularizer,discriminator_steps",
  [
    ("non_saturating", "none", 1),
    ("hinge", "none", 1),
    ("wasserstein", "gradient_penalty", 1),
    ("non_saturating", "r1", 1),
    # WGAN-GP's n_critic: D updated on examples 0, 2, 4, 6, then on 1, 3, 5, 7; G once.
    ("wasserstein", "gradient_penalty", 2),
  ],
)
def test_loss_and_regularizer_variants_match_float64_finite_differences(
  loss, regularizer, discriminator_steps
):
  config = tiny_gan_config()
  config.model.gan.loss = loss
  config.model.gan.regularizer = regularizer
  config.model.gan.regularizer_weight = 3.0
  config.model.gan.discriminator_steps = discriminator_steps
  batches = helpers.random_batches(1, GLOBAL_BATCH, shape=IMAGE_SHAPE, seed=4)
  initial = helpers.initial_state(config, IMAGE_SHAPE)
  state, metrics = helpers.run_steps(config, batches, helpers.pmap_on(2))

  train_key = jax.random.PRNGKey(1)
  d_loss, penalty, g_loss, new_gen, new_disc = reference_variant_step(
    layers_of(initial.generator.params, "decoder"),
    layers_of(initial.discriminator.params, "encoder"),
    np.asarray(batches[0]["image"], np.float64),
    contract_latents(train_key, 0, GLOBAL_BATCH),
    loss,
    regularizer,
    3.0,
    _interpolation_weights(train_key, discriminator_steps),
    discriminator_steps=discriminator_steps,
  )

  np.testing.assert_allclose(metrics[0]["d_loss"], d_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics[0]["g_loss"], g_loss, rtol=1e-5, atol=1e-6)
  if regularizer != "none":
    np.testing.assert_allclose(metrics[0]["penalty"], penalty, rtol=1e-4)
    assert penalty > 1e-3  # A penalty that matters, so its weight is tested too.
  else:
    assert "penalty" not in metrics[0]
  assert_parameters(state, new_gen, new_disc)


def test_diff_augment_step_matches_float64_reference():
  """Translation, drawn per example from the step's three streams, on every D input."""
  shape = (4, 4, 1)  # Shifts in [-1, 1] (int(0.125 * 4 + 0.5) = 1).
  config = tiny_gan_config()
  config.model.gan.diff_augment = "translation"
  batches = helpers.random_batches(1, GLOBAL_BATCH, shape=shape, seed=5)
  initial = helpers.initial_state(config, shape)
  state, metrics = helpers.run_steps(config, batches, helpers.pmap_on(2))

  train_key = jax.random.PRNGKey(1)
  streams = gan._auxiliary_keys(train_key, 0)
  for name in ("augment_real", "augment_fake"):  # The discriminator's update 0.
    streams[name] = jax.random.fold_in(streams[name], 0)

  def translation(stream):
    """The numpy reference translation, example i shifted by its draw from fold_in(stream, i)."""
    shifts = [
      [
        int(v)
        for v in diff_augment.translation_shift(
          jax.random.split(jax.random.fold_in(streams[stream], i), 1)[0], 4, 4
        )
      ]
      for i in range(GLOBAL_BATCH)
    ]
    assert len({tuple(s) for s in shifts}) > 1
    return lambda flat: np.stack(
      [translate_reference(x.reshape(shape), *s).ravel() for x, s in zip(flat, shifts)]
    )

  d_loss, _, g_loss, new_gen, new_disc = reference_variant_step(
    layers_of(initial.generator.params, "decoder"),
    layers_of(initial.discriminator.params, "encoder"),
    np.asarray(batches[0]["image"], np.float64),
    contract_latents(train_key, 0, GLOBAL_BATCH),
    "non_saturating",
    "none",
    0.0,
    None,
    augment_real=translation("augment_real"),
    augment_fake=translation("augment_fake"),
    augment_generator=translation("augment_generator"),
  )
  np.testing.assert_allclose(metrics[0]["d_loss"], d_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics[0]["g_loss"], g_loss, rtol=1e-5)
  assert_parameters(state, new_gen, new_disc)
