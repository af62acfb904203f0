"""One GAN train step recomputed independently: numpy, float64, the same fixed noise.

The step's contract: z_i = normal(fold_in(fold_in(key, step), i)) for example i of the global
batch; real images mapped [0, 1] -> [-1, 1]; the discriminator is updated first on
softplus(-D(x)) + softplus(D(G(z))); the generator is then updated on the non-saturating loss
softplus(-D'(G(z))) against the UPDATED discriminator D'. With plain SGD each update is
params - lr * grad, so both networks' new parameters are known exactly.
"""
import jax
import numpy as np

from tests.training import helpers

IMAGE_SHAPE = (2, 2, 1)
LATENT_DIM = 3
GLOBAL_BATCH = 8
LEARNING_RATE = 0.1


def _softplus(x):
  return np.logaddexp(0.0, x)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _layers(params, group):
  """[(kernel, bias), ...] of an MLP body's Dense_0, Dense_1, ... in float64."""
  dense = params[group]
  return [(np.asarray(dense[f"Dense_{i}"]["kernel"], np.float64),
           np.asarray(dense[f"Dense_{i}"]["bias"], np.float64)) for i in range(len(dense))]


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
  return [(k - LEARNING_RATE * dk, b - LEARNING_RATE * db)
          for (k, b), (dk, db) in zip(layers, grads)]


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
  new_disc = _sgd(disc_layers, [(a[0] + b[0], a[1] + b[1])
                                for a, b in zip(real_grads, fake_grads)])

  # Generator: -log sigmoid(D'(G(z))) with the updated discriminator D'.
  u_inputs, u_pre = _forward(new_disc, fake)
  logits = u_pre[-1][:, 0]
  g_loss = np.mean(_softplus(-logits))
  _, d_fake = _backward(new_disc, u_inputs, u_pre, (-_sigmoid(-logits) / n)[:, None])
  gen_grads, _ = _backward(gen_layers, g_inputs, g_pre, d_fake * (1.0 - fake ** 2))
  return d_loss, g_loss, _sgd(gen_layers, gen_grads), new_disc


def _tiny_gan_config():
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
  return np.stack([np.asarray(jax.random.normal(jax.random.fold_in(step_key, i),
                                                (LATENT_DIM,)), np.float64)
                   for i in range(num)])


def test_one_step_matches_an_independent_float64_recomputation():
  config = _tiny_gan_config()
  batches = helpers.random_batches(1, GLOBAL_BATCH, shape=IMAGE_SHAPE, seed=3)
  initial = helpers.initial_state(config, IMAGE_SHAPE)
  # 4 devices: the per-device step must average exactly as one global batch would.
  state, metrics = helpers.run_steps(config, batches, helpers.pmap_on(4))

  z = contract_latents(jax.random.PRNGKey(1), 0, GLOBAL_BATCH)  # run_steps trains with key 1.
  d_loss, g_loss, new_gen, new_disc = reference_step(
      _layers(initial.generator.params, "decoder"),
      _layers(initial.discriminator.params, "encoder"),
      np.asarray(batches[0]["image"], np.float64), z)

  np.testing.assert_allclose(metrics[0]["d_loss"], d_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics[0]["g_loss"], g_loss, rtol=1e-5)
  for name, got, want in (
      ("discriminator", _layers(state.discriminator.params, "encoder"), new_disc),
      ("generator", _layers(state.generator.params, "decoder"), new_gen)):
    for i, ((kernel, bias), (want_kernel, want_bias)) in enumerate(zip(got, want)):
      np.testing.assert_allclose(kernel, want_kernel, rtol=1e-4, atol=1e-6,
                                 err_msg=f"{name} Dense_{i} kernel")
      np.testing.assert_allclose(bias, want_bias, rtol=1e-4, atol=1e-6,
                                 err_msg=f"{name} Dense_{i} bias")
  # The step moved both networks by more than the tolerance: the comparison has teeth.
  moved = [np.max(np.abs(k - k0)) for (k, _), (k0, _) in
           zip(new_gen + new_disc, _layers(initial.generator.params, "decoder")
               + _layers(initial.discriminator.params, "encoder"))]
  assert min(moved) > 1e-4, moved
