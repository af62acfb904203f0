"""Train states: flax's TrainState plus BatchNorm statistics, and a GAN state holding two."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
from flax.training import train_state


class TrainState(train_state.TrainState):
  """One network and its optimiser. `batch_stats` is `{}` for networks without BatchNorm."""

  batch_stats: Any = flax.struct.field(default_factory=dict)

  @classmethod
  def create(cls, *, apply_fn, params, tx, **kwargs):
    """As flax's, with `step` an int32 array, so the first step's input matches its output."""
    state = super().create(apply_fn=apply_fn, params=params, tx=tx, **kwargs)
    return state.replace(step=jnp.zeros((), jnp.int32))

  def variables(self, params=None) -> dict:
    """The variable dict for `apply_fn`, with `params` substituted when given."""
    variables = {"params": self.params if params is None else params}
    if self.batch_stats:
      variables["batch_stats"] = self.batch_stats
    return variables

  def apply_train(self, params, *args):
    """Applies the network in training mode; returns (outputs, updated batch_stats)."""
    if not self.batch_stats:
      return self.apply_fn(self.variables(params), *args, train=True), self.batch_stats
    outputs, updates = self.apply_fn(
      self.variables(params), *args, train=True, mutable=["batch_stats"]
    )
    return outputs, updates["batch_stats"]


class GANState(flax.struct.PyTreeNode):
  """Generator and discriminator states; both advance by one step per train step.

  `generator_ema`: an exponential moving average of the generator's params (same tree), or
  `{}` when the config keeps none; saved in checkpoints with the rest.
  """

  generator: TrainState
  discriminator: TrainState
  generator_ema: Any = flax.struct.field(default_factory=dict)

  @property
  def step(self) -> jax.Array:
    return self.generator.step
