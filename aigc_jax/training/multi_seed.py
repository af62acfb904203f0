"""Many seeds of one small model trained at once, in one compiled call per chunk of steps.

For problems as small as the 2-D mixtures a step is a few small matrix products, so a Python
loop pays more in dispatch than the step costs, and one process per seed pays it once per
seed. Here every seed advances together: `jax.vmap` over seeds of the family's own
per-device `train_step`, and `jax.lax.scan` over steps, with batches drawn on the device.

The step is exactly `family.train_step`, run by `parallel.on_one_device` on a device axis of
size 1 (so its collectives over `noise.BATCH_AXIS` are identities): a seed trained here
follows the same update rule as in the training loop, only its batches are drawn differently.

Batches: step t of a seed draws `batch_size` example indices uniformly WITH replacement from
the training arrays, from `fold_in(data_key, t)` (the sampling of the PacGAN protocol, where
each slot of a pack is a with-replacement resample of the training set). Seed s's keys are
`init, train, data = split(PRNGKey(s), 3)`; results do not depend on which other seeds share
the call.

Learning-rate sweeps: with `learning_rates`, every (seed, learning rate) pair is a member of
the vmapped axis, so one compiled call trains S seeds x L rates. The family then comes from
`sweep_family`: its optimiser is `config.optimizer`'s at learning rate 1, followed by a
per-member factor kept in the optimiser state (`LearningRateFactorState`), set to the member's
rate. Every schedule is proportional to `learning_rate`, and Adam's, AdamW's and SGD's update
is the rate times a direction that does not depend on it, so a member trains as a run of its
seed at its rate would (to float rounding; tested within 1e-6).

Speed on CPUs (measured on 2 cores, a conv VAE on 32x32 images, batch 60): XLA's CPU backend
runs convolutions inside a `while` loop (what `lax.scan` compiles to) about 40x slower than
the same step called from Python, and a convolution vmapped over seeds (a grouped convolution)
about 14x slower than one seed at a time. So for convolutional models on a CPU, pass
`seeds_per_call=1, scan_steps=False`: seeds then run one after the other through ONE compiled
step each (the same numbers, see the tests). MLPs (the 2-D mixtures) are fastest with all
seeds in one call and steps under `lax.scan`, the defaults.
"""

import functools
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aigc_jax.training.family import Family, get_family
from aigc_jax.training.optimizers import build_optimizer
from aigc_jax.training.parallel import on_one_device

State = Any


class LearningRateFactorState(NamedTuple):
  """The learning rate of one member of a sweep, as a factor of its optimiser's (which is 1)."""

  factor: jax.Array  # [] float32; [members] once stacked by `MultiSeedTrainer.init`.


def scale_by_learning_rate_factor() -> optax.GradientTransformation:
  """Multiplies the updates by the state's `factor` (1 at init)."""
  return optax.GradientTransformation(
    lambda params: LearningRateFactorState(jnp.ones((), jnp.float32)),
    lambda updates, state, params=None: (
      jax.tree.map(lambda u: u * state.factor.astype(u.dtype), updates),
      state,
    ),
  )


def sweep_family(config: ml_collections.ConfigDict, sample_shape: Tuple[int, ...]) -> Family:
  """The family of `config` for a learning-rate sweep (`MultiSeedTrainer(learning_rates=...)`).

  Every network's optimiser is `config.optimizer` with learning_rate 1 (its schedule
  included), then `scale_by_learning_rate_factor`. `config.optimizer.learning_rate` is not used.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.optimizer.learning_rate = 1.0
  optimizer = optax.chain(
    build_optimizer(config.optimizer, config.train.num_steps), scale_by_learning_rate_factor()
  )
  return get_family(config, sample_shape, optimizer=optimizer)


def _is_factor(node) -> bool:
  return isinstance(node, LearningRateFactorState)


def set_learning_rates(states: State, learning_rates: jax.Array) -> State:
  """`states` (stacked over M members, of a `sweep_family`) with member m at
  `learning_rates[m]` (`[M]`) in every network; ValueError (one line) without factors."""
  found = [node for node in jax.tree.leaves(states, is_leaf=_is_factor) if _is_factor(node)]
  if not found:
    raise ValueError(
      "These states have no per-member learning rate to set; build the family with "
      "multi_seed.sweep_family(config, sample_shape) for a learning-rate sweep."
    )
  rates = jnp.asarray(learning_rates, jnp.float32)
  return jax.tree.map(  # A copy per network: `run` donates every buffer of the states once.
    lambda node: LearningRateFactorState(jnp.array(rates)) if _is_factor(node) else node,
    states,
    is_leaf=_is_factor,
  )


def seed_keys(seeds: Sequence[int]) -> Dict[str, jax.Array]:
  """Per-seed keys `{"init", "train", "data"}`, each `[S, 2]` uint32."""
  keys = jnp.stack([jax.random.split(jax.random.PRNGKey(int(s)), 3) for s in seeds])
  return {"init": keys[:, 0], "train": keys[:, 1], "data": keys[:, 2]}


def draw_batch(
  samples: jax.Array, labels: jax.Array, data_key: jax.Array, step: jax.Array, batch_size: int
) -> Dict[str, jax.Array]:
  """The batch of `step`: `batch_size` rows drawn uniformly with replacement.

  Args:
    samples: `[N, *sample_shape]` float32 training samples; labels: `[N]` int32.
  Returns:
    `{"image": [batch_size, *sample_shape], "label": [batch_size], "mask": [batch_size]}`.
  """
  index = jax.random.randint(jax.random.fold_in(data_key, step), (batch_size,), 0, samples.shape[0])
  return {
    "image": samples[index],
    "label": labels[index],
    "mask": jnp.ones((batch_size,), jnp.float32),
  }


class MultiSeedTrainer:
  """Trains one family for several seeds (and learning rates) at once on in-memory arrays.

  Args:
    family: the family (`training.family.get_family(config, sample_shape)`; with
      `learning_rates`, `sweep_family(config, sample_shape)`).
    samples: `[N, *sample_shape]` float32 training samples (images in [0, 1] or points).
    labels: `[N]` int32 labels.
    batch_size: examples per step and seed.
    seeds: the seeds; every state and metric carries a leading axis over the members.
    seeds_per_call: members vmapped together in one compiled call (None = all); the members
      are run in consecutive groups of this size, each group through the same compiled call.
    scan_steps: True runs a chunk of steps under `lax.scan` in one call; False calls a
      compiled single step once per step from Python (faster for convolutions on a CPU).
    learning_rates: None: one member per seed, at the family's learning rate. Else L rates
      (> 0): one member per (seed, rate) pair, seed-major (`self.members[m]` is member m's
      pair: m = seed_index * L + rate_index), each with its seed's keys.

  Usage:
    trainer = MultiSeedTrainer(family, x, y, batch_size=100, seeds=range(10))
    states = trainer.init()
    states, metrics = trainer.run(states, num_steps=1000)   # metrics: {name: [S, 1000]}
  """

  def __init__(
    self,
    family: Family,
    samples: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seeds: Sequence[int],
    seeds_per_call: Optional[int] = None,
    scan_steps: bool = True,
    learning_rates: Optional[Sequence[float]] = None,
  ):
    self.family = family
    self.seeds = tuple(int(s) for s in seeds)
    if learning_rates is None:
      self.learning_rates = None
      self.members = tuple((seed, None) for seed in self.seeds)
    else:
      self.learning_rates = tuple(float(r) for r in learning_rates)
      if not self.learning_rates or min(self.learning_rates) <= 0:
        raise ValueError(f"learning_rates must be rates > 0, got {list(learning_rates)}.")
      self.members = tuple((seed, rate) for seed in self.seeds for rate in self.learning_rates)
    if seeds_per_call is not None and seeds_per_call < 1:
      raise ValueError(f"seeds_per_call must be >= 1 or None, got {seeds_per_call}")
    self.seeds_per_call = seeds_per_call or max(len(self.members), 1)
    self.scan_steps = bool(scan_steps)
    self.batch_size = int(batch_size)
    self._samples = jnp.asarray(samples, jnp.float32)
    self._labels = jnp.asarray(labels, jnp.int32)
    self.keys = seed_keys([seed for seed, _ in self.members])
    self._chunks = {}  # num_steps -> compiled chunk.

  def member_index(self, seed: int, learning_rate: Optional[float] = None) -> int:
    """The index along the leading axis of the member (seed, learning_rate)."""
    key = (int(seed), None if learning_rate is None else float(learning_rate))
    if key not in self.members:
      raise ValueError(f"No member (seed, learning rate) = {key}; the members are {self.members}.")
    return self.members.index(key)

  def init(self) -> State:
    """The initial states, stacked over members (seed s starts from
    `family.init(init_key_s)`; a sweep's members at their learning rates)."""
    states = jax.jit(jax.vmap(self.family.init))(self.keys["init"])
    if self.learning_rates is not None:
      states = set_learning_rates(states, [rate for _, rate in self.members])
    return states

  def _chunk(self, num_steps: int):
    if num_steps not in self._chunks:

      def per_seed(state, train_key, data_key, samples, labels):
        def body(state, _):
          batch = draw_batch(samples, labels, data_key, state.step, self.batch_size)
          return on_one_device(self.family.train_step)(state, batch, train_key)

        return jax.lax.scan(body, state, None, length=num_steps)

      self._chunks[num_steps] = jax.jit(
        jax.vmap(per_seed, in_axes=(0, 0, 0, None, None)), donate_argnums=(0,)
      )
    return self._chunks[num_steps]

  def _single_step(self):
    """One step per seed without `lax.scan` (metrics `[S, 1]`), compiled once."""
    if "single" not in self._chunks:

      def per_seed(state, train_key, data_key, samples, labels):
        batch = draw_batch(samples, labels, data_key, state.step, self.batch_size)
        state, metrics = on_one_device(self.family.train_step)(state, batch, train_key)
        return state, jax.tree.map(lambda m: m[None], metrics)

      self._chunks["single"] = jax.jit(
        jax.vmap(per_seed, in_axes=(0, 0, 0, None, None)), donate_argnums=(0,)
      )
    return self._chunks["single"]

  def run(self, states: State, num_steps: int) -> Tuple[State, Dict[str, jax.Array]]:
    """Advances every seed by `num_steps` steps; returns the states and per-step metrics.

    Each state continues from its own `step`, so `run(s, a)` then `run(., b)` equals
    `run(s, a + b)`. Metrics: `{name: [members, num_steps]}` on the device. `states` is
    donated.
    """
    num_steps = int(num_steps)
    groups = [
      slice(start, start + self.seeds_per_call)
      for start in range(0, len(self.members), self.seeds_per_call)
    ]
    if len(groups) == 1:
      return self._run_group(states, groups[0], num_steps)
    outputs = [
      self._run_group(jax.tree.map(lambda x, g=g: x[g], states), g, num_steps) for g in groups
    ]
    return jax.tree.map(lambda *parts: jnp.concatenate(parts), *outputs)

  def _run_group(self, states: State, group: slice, num_steps: int):
    train_keys, data_keys = self.keys["train"][group], self.keys["data"][group]
    if self.scan_steps:
      return self._chunk(num_steps)(states, train_keys, data_keys, self._samples, self._labels)
    step = self._single_step()
    per_step = []
    for _ in range(num_steps):
      states, metrics = step(states, train_keys, data_keys, self._samples, self._labels)
      per_step.append(metrics)
    if not per_step:
      return states, {}
    return states, jax.tree.map(lambda *m: jnp.concatenate(m, axis=1), *per_step)

  def generate(self, states: State, key: jax.Array, num: int, labels=None) -> jax.Array:
    """`[members, num, *sample_shape]`: `num` samples of every member from one key and labels."""
    return _vmapped_generate(self.family.generate, num)(states, key, labels)


@functools.lru_cache(maxsize=None)
def _vmapped_generate(generate, num: int):
  return jax.jit(
    jax.vmap(lambda state, key, labels: generate(state, key, num, labels), in_axes=(0, None, None))
  )


def select_seed(states: State, index: int) -> State:
  """The state of one member (index into the leading axis; `MultiSeedTrainer.member_index`)."""
  return jax.tree.map(lambda x: x[index], states)
