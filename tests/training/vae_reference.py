"""An independent numpy float64 reference of the MLP AE / VAE losses, for the tests that pin
the maths of `aigc_jax.training.autoencoders`.

Nothing here calls the library's model or loss code: the forward pass is written out from the
flax parameter dicts (`Dense_j` kernels `[in, out]` and biases), gradients are central finite
differences. The only jax calls are the documented noise contract (example i's noise at a
step comes from `fold_in(fold_in(train_key, step), i)`), which the tests must reproduce.
"""

import math

import jax
import numpy as np

FD_STEP = 1e-5  # Central differences in float64: error ~1e-10 on these tiny losses.


def to_float64(tree):
  return jax.tree.map(lambda a: np.array(a, np.float64), tree)


def mlp(layers, x):
  """Dense_0 ... Dense_{n-1} with ReLU between them, none after the last."""
  for j in range(len(layers)):
    x = x @ layers[f"Dense_{j}"]["kernel"] + layers[f"Dense_{j}"]["bias"]
    if j < len(layers) - 1:
      x = np.maximum(x, 0.0)
  return x


def bernoulli_nll(logits, x):
  """Per-example -log Bernoulli(x | sigmoid(logits)), summed over features; `[B, D] -> [B]`."""
  return np.sum(np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits))), -1)


def gaussian_nll(scale):
  def nll(mean, x):
    return np.sum(
      0.5 * ((x - mean) / scale) ** 2 + math.log(scale) + 0.5 * math.log(2 * math.pi), -1
    )

  return nll


def bernoulli_mean(logits):
  return 1.0 / (1.0 + np.exp(-logits))


def unit_clip(mean):
  return np.clip(mean, 0.0, 1.0)


def example_noise(key, indices, shape, draw=jax.random.normal):
  """`draw(fold_in(key, i), shape)` for each global example index i, float64."""
  return np.stack(
    [np.asarray(draw(jax.random.fold_in(key, int(i)), shape), np.float64) for i in indices]
  )


def step_noise(train_key, step, indices, shape, draw=jax.random.normal):
  """The training noise: `example_noise` of the step's key `fold_in(train_key, step)`."""
  return example_noise(jax.random.fold_in(train_key, step), indices, shape, draw)


def _join(x, onehot):
  return x if onehot is None else np.concatenate([x, onehot], axis=-1)


def vae_terms(params, x, eps, beta, nll, mean_fn, onehot=None):
  """Batch means of the VAE's loss terms; `x [B, ...]`, `eps [B, L]`, float64.

  loss = mean_i [nll(x_i | dec(z_i)) + beta * KL_i], z = mean + exp(logvar / 2) * eps.
  """
  flat = x.reshape(len(x), -1)
  code = mlp(params["encoder"], _join(flat, onehot))
  latent_dim = eps.shape[-1]
  mean, logvar = code[:, :latent_dim], code[:, latent_dim:]
  z = mean + np.exp(0.5 * logvar) * eps
  outputs = mlp(params["decoder"], _join(z, onehot))
  reconstruction = nll(outputs, flat)
  kl = 0.5 * np.sum(mean**2 + np.exp(logvar) - 1.0 - logvar, -1)
  return {
    "loss": np.mean(reconstruction + beta * kl),
    "reconstruction_nll": np.mean(reconstruction),
    "kl": np.mean(kl),
    "mse_sampled_code": np.mean((mean_fn(outputs) - flat) ** 2),
  }


def ae_terms(params, x_input, x_target, nll, mean_fn, onehot=None):
  """Batch means of the AE's loss terms: nll(x_target | dec(enc(x_input))), float64."""
  target = x_target.reshape(len(x_target), -1)
  code = mlp(params["encoder"], _join(x_input.reshape(len(x_input), -1), onehot))
  outputs = mlp(params["decoder"], _join(code, onehot))
  return {"loss": np.mean(nll(outputs, target)), "mse": np.mean((mean_fn(outputs) - target) ** 2)}


def numeric_gradient(loss_fn, params):
  """Central finite differences of `loss_fn(params) -> float` w.r.t. every parameter."""
  leaves, treedef = jax.tree.flatten(to_float64(params))
  grads = []
  for leaf in leaves:
    grad = np.zeros_like(leaf)
    for index in np.ndindex(leaf.shape):
      original = leaf[index]
      leaf[index] = original + FD_STEP
      up = loss_fn(jax.tree.unflatten(treedef, leaves))
      leaf[index] = original - FD_STEP
      down = loss_fn(jax.tree.unflatten(treedef, leaves))
      leaf[index] = original
      grad[index] = (up - down) / (2 * FD_STEP)
    grads.append(grad)
  return jax.tree.unflatten(treedef, grads)
