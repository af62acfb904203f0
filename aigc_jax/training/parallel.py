"""Data parallelism, in one place: the same per-device step under `jax.pmap` or `jax.shard_map`.

Both modes take host batches laid out `[local_devices, per_device, ...]` (see
`aigc_jax.data`) and keep the train state replicated. The step functions they wrap are written
per device and average with collectives over `noise.BATCH_AXIS`.

- "pmap": `jax.pmap` over the local devices; the state carries a leading device axis.
- "shard_map": `jax.jit` of `jax.shard_map` over a one-axis mesh of all devices; the state is
  one logical copy replicated by a `NamedSharding`. `check_vma=False`, because with the
  default check the gradient of a replicated parameter inside the body arrives already summed
  over devices (8x on 8 devices) and the explicit `pmean` in the step would be wrong.
- "auto" (the default): the faster of the two, which is "shard_map" wherever it was measured:
  pmap keeps a copy of the state per device and copies parameters around the step even on
  one device (about 1.15x more samples/s for the MLP VAE on one CPU device, 1.35x on 2 and
  1.85x on 8 forced host devices; the convolutional networks within a few percent).

The modes give the same numbers (tests/training/test_parallel.py) and read each other's
checkpoints, so a run may resume under another mode.
"""
import abc
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aigc_jax.registry import Registry
from aigc_jax.training.noise import BATCH_AXIS


class DataParallel(abc.ABC):
  """Moves states and batches to the devices and compiles per-device steps over them."""

  @property
  @abc.abstractmethod
  def num_local_devices(self) -> int:
    """The leading axis of the host batches this mode takes."""

  @property
  @abc.abstractmethod
  def replicated_sharding(self) -> jax.sharding.Sharding:
    """Sharding of one logical copy replicated on every device of this mode.

    Checkpoints restore straight into it; `from_replicated` then gives the step's layout.
    """

  @abc.abstractmethod
  def from_replicated(self, state: Any) -> Any:
    """State with `replicated_sharding` -> the device layout of this mode, on the devices."""

  def put_state(self, state: Any) -> Any:
    """Host state (one copy) -> the device layout of this mode."""
    # Copied by a computation, so that every leaf has buffers of its own: the steps donate
    # the state, which frees each buffer once, and an array standing in two places (a GAN's
    # EMA starts as the generator's own parameters) crashed jit + shard_map on 2+ devices.
    # (`jax.device_put` keeps such aliases, even with `may_alias=False`.)
    copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree),
                   out_shardings=self.replicated_sharding)
    return self.from_replicated(copy(state))

  @abc.abstractmethod
  def get_state(self, state: Any) -> Any:
    """Device state -> one copy, usable by single-device functions (sampling, saving)."""

  @abc.abstractmethod
  def put_batch(self, batch: Any) -> Any:
    """Host batch `[local_devices, per_device, ...]` -> device batch."""

  @abc.abstractmethod
  def compile_train_step(self, step: Callable) -> Callable:
    """`step(state, batch, key) -> (state, metrics)` per device -> the compiled global step.

    The input state is donated. Returned metrics are one copy of the pmean-ed scalars.
    """

  @abc.abstractmethod
  def compile_eval_step(self, step: Callable) -> Callable:
    """`step(state, batch, key) -> sums` per device (psum-ed) -> the compiled global step."""

  def first_copy(self, tree: Any) -> Any:
    """Metrics (or any replicated output, on the device or fetched) -> one copy."""
    return tree


class PmapParallel(DataParallel):
  """`jax.pmap` over the local devices (all of them unless `devices` is given)."""

  def __init__(self, devices=None):
    self._devices = list(devices) if devices is not None else jax.local_devices()
    # pmap returns arrays sharded like this; inputs laid out the same way hit the same
    # compiled step (flax.jax_utils.replicate's layout differs and costs a second compile).
    mesh = Mesh(np.asarray(self._devices), (BATCH_AXIS,))
    self.sharding = NamedSharding(mesh, P(BATCH_AXIS))
    self._replicated = NamedSharding(mesh, P())

  @property
  def num_local_devices(self) -> int:
    return len(self._devices)

  @property
  def replicated_sharding(self):
    return self._replicated

  def from_replicated(self, state):
    def stack_copies(x):  # Each device's copy gains a leading axis of 1, on that device.
      by_device = {shard.device: shard.data for shard in x.addressable_shards}
      copies = [by_device[device][None] for device in self._devices]
      return jax.make_array_from_single_device_arrays(
          (len(self._devices),) + x.shape, self.sharding, copies)
    return jax.tree.map(stack_copies, state)

  def get_state(self, state):
    return jax.tree.map(lambda x: x[0], state)

  def put_batch(self, batch):
    return jax.device_put(batch, self.sharding)

  def compile_train_step(self, step):
    return jax.pmap(step, axis_name=BATCH_AXIS, in_axes=(0, 0, None), donate_argnums=(0,))

  def compile_eval_step(self, step):
    return jax.pmap(step, axis_name=BATCH_AXIS, in_axes=(0, 0, None))

  def first_copy(self, tree):
    return jax.tree.map(lambda x: x[0], tree)


class ShardMapParallel(DataParallel):
  """`jax.jit` + `jax.shard_map` over a one-axis mesh of every device of every process.

  `devices` (single-process only) restricts the mesh, for tests.
  """

  def __init__(self, devices=None):
    self.mesh = Mesh(np.asarray(devices if devices is not None else jax.devices()),
                     (BATCH_AXIS,))
    self._replicated = NamedSharding(self.mesh, P())
    self._batch_sharding = NamedSharding(self.mesh, P(BATCH_AXIS))

  @property
  def num_local_devices(self) -> int:
    return len(self.mesh.local_devices)

  @property
  def replicated_sharding(self):
    return self._replicated

  def from_replicated(self, state):
    return state

  def get_state(self, state):
    return state

  def put_batch(self, batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self._batch_sharding, x), batch)

  def _shard_mapped(self, step, out_specs):
    def per_device(state, batch, key):
      # Each device sees a [1, per_device, ...] block of the [devices, per_device, ...] batch.
      return step(state, jax.tree.map(lambda x: x[0], batch), key)
    return jax.shard_map(per_device, mesh=self.mesh, in_specs=(P(), P(BATCH_AXIS), P()),
                         out_specs=out_specs, check_vma=False)

  def compile_train_step(self, step):
    return jax.jit(self._shard_mapped(step, (P(), P())), donate_argnums=(0,))

  def compile_eval_step(self, step):
    return jax.jit(self._shard_mapped(step, P()))


PARALLEL_MODES = Registry[Callable[[], DataParallel]]("parallel mode")
PARALLEL_MODES.register("pmap")(PmapParallel)
PARALLEL_MODES.register("shard_map")(ShardMapParallel)
PARALLEL_MODES.register("auto")(ShardMapParallel)  # See the module docstring.


def get_data_parallel(mode: str) -> DataParallel:
  """The data-parallel mode named by `config.train.parallel`: "auto", "pmap" or "shard_map"."""
  return PARALLEL_MODES.get(mode)()
