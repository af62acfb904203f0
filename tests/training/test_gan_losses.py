"""GAN losses and regularisers against their formulas, computed independently in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.errors import UnknownNameError
from aigc_jax.training import gan_losses, noise

LOGITS_REAL = np.array([2.0, -0.5, 0.3, 1.5, -3.0], np.float32)
LOGITS_FAKE = np.array([-1.0, 0.7, 1.2, -2.5, 0.0], np.float32)


def _on_one_device(fn):
  """Runs `fn` where `noise.global_example_indices` works (one device, global index = row)."""

  def wrapped(*args):
    batched = jax.vmap(fn, axis_name=noise.BATCH_AXIS)(*[jnp.asarray(a)[None] for a in args])
    return np.asarray(batched[0], np.float64)

  return wrapped


@pytest.mark.parametrize(
  "name,d_formula,g_formula",
  [
    (
      "non_saturating",
      lambda r, f: -np.log(1 / (1 + np.exp(-r))) - np.log(1 - 1 / (1 + np.exp(-f))),
      lambda f: -np.log(1 / (1 + np.exp(-f))),
    ),
    ("hinge", lambda r, f: np.maximum(0, 1 - r) + np.maximum(0, 1 + f), lambda f: -f),
    ("wasserstein", lambda r, f: f - r, lambda f: -f),
  ],
)
def test_losses_equal_their_formulas_on_fixed_logits(name, d_formula, g_formula):
  loss = gan_losses.GAN_LOSSES.get(name)
  r, f = LOGITS_REAL.astype(np.float64), LOGITS_FAKE.astype(np.float64)
  np.testing.assert_allclose(
    loss.discriminator(LOGITS_REAL, LOGITS_FAKE), d_formula(r, f), rtol=1e-6, atol=1e-6
  )
  np.testing.assert_allclose(loss.generator(LOGITS_FAKE), g_formula(f), rtol=1e-6, atol=1e-6)


def test_gradient_penalty_is_zero_for_a_critic_with_unit_gradient_norm_everywhere():
  rng = np.random.RandomState(0)
  weight = rng.randn(6).astype(np.float32)
  weight /= np.linalg.norm(weight)
  critic = lambda x: x.reshape((x.shape[0], -1)) @ weight + 0.3  # |grad| = 1 at every x.
  real, fake = rng.randn(5, 2, 3, 1), rng.randn(5, 2, 3, 1)
  penalty = _on_one_device(
    lambda r, f: gan_losses.gradient_penalty(critic, r, f, jax.random.PRNGKey(0))
  )(real.astype(np.float32), fake.astype(np.float32))
  np.testing.assert_allclose(penalty, 0.0, atol=1e-10)
  # Twice the weight: |grad| = 2 everywhere, penalty (2 - 1)^2 = 1 for every example.
  doubled = lambda x: 2.0 * critic(x)
  penalty = _on_one_device(
    lambda r, f: gan_losses.gradient_penalty(doubled, r, f, jax.random.PRNGKey(0))
  )(real.astype(np.float32), fake.astype(np.float32))
  np.testing.assert_allclose(penalty, 1.0, rtol=1e-5)


def _numpy_critic(matrix):
  """A non-linear critic and its float64 numpy twin: sum(tanh(x @ matrix) ** 2)."""
  jax_critic = lambda x: jnp.sum(jnp.tanh(x.reshape((x.shape[0], -1)) @ matrix) ** 2, axis=-1)
  numpy_critic = lambda x: np.sum(np.tanh(x.reshape((x.shape[0], -1)) @ matrix) ** 2, axis=-1)
  return jax_critic, numpy_critic


def _finite_difference_input_gradients(critic, x, step=1e-6):
  flat = x.reshape(x.shape[0], -1)
  grads = np.zeros_like(flat)
  for j in range(flat.shape[1]):
    up, down = flat.copy(), flat.copy()
    up[:, j] += step
    down[:, j] -= step
    grads[:, j] = (critic(up) - critic(down)) / (2 * step)
  return grads


def test_gradient_penalty_matches_numpy_finite_differences():
  rng = np.random.RandomState(1)
  matrix = rng.randn(6, 4).astype(np.float32)
  jax_critic, numpy_critic = _numpy_critic(matrix.astype(np.float64))
  real, fake = rng.randn(7, 6), rng.randn(7, 6)
  key = jax.random.PRNGKey(5)
  got = _on_one_device(lambda r, f: gan_losses.gradient_penalty(jax_critic, r, f, key))(
    real.astype(np.float32), fake.astype(np.float32)
  )

  # eps_i ~ U[0, 1] from fold_in(key, i): the per-example noise contract.
  eps = np.array([float(jax.random.uniform(jax.random.fold_in(key, i))) for i in range(7)])
  interpolates = eps[:, None] * real + (1 - eps[:, None]) * fake
  grads = _finite_difference_input_gradients(numpy_critic, interpolates)
  want = (np.linalg.norm(grads, axis=1) - 1.0) ** 2
  np.testing.assert_allclose(got, want, rtol=2e-4)
  assert np.max(want) > 1.0  # Far from the trivial zero.


def test_r1_is_half_the_squared_input_gradient_norm_on_reals():
  rng = np.random.RandomState(2)
  matrix = rng.randn(6, 4).astype(np.float32)
  jax_critic, numpy_critic = _numpy_critic(matrix.astype(np.float64))
  real, fake = rng.randn(5, 6), rng.randn(5, 6)
  got = _on_one_device(lambda r, f: gan_losses.r1_penalty(jax_critic, r, f, jax.random.PRNGKey(0)))(
    real.astype(np.float32), fake.astype(np.float32)
  )
  grads = _finite_difference_input_gradients(numpy_critic, real)
  np.testing.assert_allclose(got, 0.5 * np.sum(grads**2, axis=1), rtol=2e-4)


@pytest.mark.parametrize(
  "registry,name,message",
  [
    (
      gan_losses.GAN_LOSSES,
      "hinged",
      "Unknown GAN loss 'hinged'; valid choices are: hinge, non_saturating, wasserstein.",
    ),
    (
      gan_losses.REGULARIZERS,
      "gp",
      "Unknown GAN regularizer 'gp'; valid choices are: gradient_penalty, none, r1.",
    ),
  ],
)
def test_unknown_names_list_the_choices(registry, name, message):
  with pytest.raises(UnknownNameError) as info:
    registry.get(name)
  assert str(info.value) == message
