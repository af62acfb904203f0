"""Step functions shared by families whose loss is a mean of per-example terms (AE, VAE,
classifier). A family supplies `terms_fn(state, params, batch, key, train) -> (terms,
batch_stats)`, where `terms` maps names to per-example values `[per_device]` and includes
"loss"; these functions make its per-device train and eval steps.
"""

import jax
import jax.numpy as jnp

from aigc_jax.training import noise


def mean_loss_train_step(state, batch, key, *, terms_fn):
  """One optimiser step on the global-batch mean of `terms["loss"]`.

  The step's key is `fold_in(key, state.step)`. Gradients and the metrics (global-batch
  means of every term) are averaged over the device axis.
  """
  step_key = jax.random.fold_in(key, state.step)

  def loss_fn(params):
    terms, batch_stats = terms_fn(state, params, batch, step_key, True)
    means = jax.tree.map(jnp.mean, terms)
    return means["loss"], (means, batch_stats)

  grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, noise.BATCH_AXIS)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state, jax.lax.pmean(metrics, noise.BATCH_AXIS)


def masked_eval_step(state, batch, key, *, terms_fn):
  """Sums over the real examples (`batch["mask"]`) of every term, plus their count "weight"."""
  terms, _ = terms_fn(state, state.params, batch, key, False)
  mask = batch["mask"]
  sums = {name: jnp.sum(value * mask) for name, value in terms.items()}
  sums["weight"] = jnp.sum(mask)
  return jax.lax.psum(sums, noise.BATCH_AXIS)
