"""GAN losses and discriminator regularisers, found by the names in `config.model.gan`.

A loss gives per-example terms from discriminator outputs ("logits", `[N]`, real = high):
`discriminator(real_logits, fake_logits) -> [N]` (the real and the fake term of pair i,
summed) and `generator(fake_logits) -> [N]`; a step minimises their means.

A regulariser gives a per-example penalty `[N]` from `critic(x) -> [N]` (the discriminator as
a function of its input, one output per example, so no BatchNorm), the discriminator's real
and fake inputs `[N, ...]`, and a key; the discriminator loss adds `weight * mean(penalty)`.
"""

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax

from aigc_jax.registry import Registry
from aigc_jax.training import noise


@dataclasses.dataclass(frozen=True)
class GANLoss:
  """Per-example loss terms; `probabilities` says the logits are log-odds of "real"."""

  discriminator: Callable[[jax.Array, jax.Array], jax.Array]
  generator: Callable[[jax.Array], jax.Array]
  probabilities: bool = False


GAN_LOSSES = Registry[GANLoss]("GAN loss")
# Goodfellow et al. 2014, the generator's non-saturating form: D minimises -log sigmoid(D(x))
# - log(1 - sigmoid(D(G(z)))), G minimises -log sigmoid(D(G(z))).
GAN_LOSSES.register("non_saturating")(
  GANLoss(
    discriminator=lambda real, fake: jax.nn.softplus(-real) + jax.nn.softplus(fake),
    generator=lambda fake: jax.nn.softplus(-fake),
    probabilities=True,
  )
)
# Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D max(0, 1 - D(x)) + max(0, 1 + D(G(z))),
# G -D(G(z)).
GAN_LOSSES.register("hinge")(
  GANLoss(
    discriminator=lambda real, fake: jax.nn.relu(1.0 - real) + jax.nn.relu(1.0 + fake),
    generator=lambda fake: -fake,
  )
)
# Wasserstein (Arjovsky et al. 2017): the critic minimises D(G(z)) - D(x), G -D(G(z)). Needs a
# Lipschitz constraint: the gradient penalty (WGAN-GP) or spectral normalisation.
GAN_LOSSES.register("wasserstein")(
  GANLoss(discriminator=lambda real, fake: fake - real, generator=lambda fake: -fake)
)


def input_gradients(critic: Callable, x: jax.Array) -> jax.Array:
  """d critic(x)_i / d x_i for each example i, `[N, ...]` (the critic is per example)."""
  return jax.grad(lambda inputs: jnp.sum(critic(inputs)))(x)


def _squared_norms(grads: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(grads.reshape((grads.shape[0], -1))), axis=-1)


def gradient_penalty(critic, real, fake, key):
  """WGAN-GP (Gulrajani et al. 2017): (|grad critic(x_hat)|_2 - 1)^2 per example, `[N]`.

  x_hat_i = eps_i * real_i + (1 - eps_i) * fake_i with eps_i ~ U[0, 1] drawn from
  `fold_in(key, i)`, i the example's index in the global batch (device-count independent).
  """
  indices = noise.global_example_indices(real.shape[0])
  eps = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(indices)
  eps = eps.reshape((-1,) + (1,) * (real.ndim - 1))
  interpolates = eps * real + (1.0 - eps) * fake
  grads = input_gradients(critic, interpolates).reshape((real.shape[0], -1))
  return jnp.square(optax.safe_norm(grads, 0.0, axis=-1) - 1.0)


def r1_penalty(critic, real, fake, key):
  """R1 (Mescheder et al. 2018): 0.5 * |grad critic(x)|_2^2 on the real inputs, `[N]`.

  With weight gamma the loss adds gamma / 2 * E|grad D(x)|^2, the paper's R1.
  """
  del fake, key
  return 0.5 * _squared_norms(input_gradients(critic, real))


Regularizer = Callable[[Callable, jax.Array, jax.Array, jax.Array], jax.Array]
REGULARIZERS = Registry[Optional[Regularizer]]("GAN regularizer")
REGULARIZERS.register("none")(None)
REGULARIZERS.register("gradient_penalty")(gradient_penalty)
REGULARIZERS.register("r1")(r1_penalty)
