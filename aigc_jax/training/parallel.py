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

`on_one_device` runs the same per-device step outside both, on a device axis of size 1 (its
collectives are identities): for the multi-seed trainer, which vmaps it over seeds, and for
tracing a step's outputs without devices.

In a multi-process run (`aigc_jax.distributed`) each process passes its own
`[local_devices, per_device, ...]` slice of the global batch. "shard_map" assembles global
arrays from them (`jax.make_array_from_process_local_data`) on a mesh of every device of every
process; "pmap" maps over each process's local devices while its collectives and
`axis_index` span all processes. Either way device d of the run holds examples
`d * per_device ...` of the global batch, so noise and results equal a single-process run's
(tests/experiments/test_multiprocess.py).
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
    copy = jax.jit(
      lambda tree: jax.tree.map(jnp.copy, tree), out_shardings=self.replicated_sharding
    )
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

  def to_replicated(self, state: Any) -> Any:
    """Device state -> one logical copy with `replicated_sharding`: what checkpoints save.

    In a multi-process run every process holds its part of one global array (orbax writes
    it collectively); in a single-process run this is `get_state`.
    """
    return self.get_state(state)

  def local_copy(self, state: Any) -> Any:
    """Device state -> one copy on this process's devices, for computations that only this
    process runs (process 0 drawing image grids). `get_state` in a single-process run."""
    return self.get_state(state)

  def count_flags(self, flag: bool) -> jax.Array:
    """How many devices of the whole run (all processes) raised `flag`: a scalar int32 on the
    device, not waited for. A collective: every process must call it in the same order."""
    if self._flag_sum is None:
      self._flag_sum = self._compile_flag_sum()
    flags = np.full((self.num_local_devices, 1), int(flag), np.int32)
    return self._flag_sum(self.put_batch(flags))

  _flag_sum = None

  @abc.abstractmethod
  def _compile_flag_sum(self) -> Callable:
    """The compiled `[local_devices, 1]` int32 device batch -> the global sum, shape []."""


class PmapParallel(DataParallel):
  """`jax.pmap` over the local devices (all of them unless `devices` is given)."""

  def __init__(self, devices=None):
    self._devices = list(devices) if devices is not None else jax.local_devices()
    # pmap returns arrays sharded like this; inputs laid out the same way hit the same
    # compiled step (flax.jax_utils.replicate's layout differs and costs a second compile).
    mesh = Mesh(np.asarray(self._devices), (BATCH_AXIS,))
    self.sharding = NamedSharding(mesh, P(BATCH_AXIS))
    self._local_replicated = NamedSharding(mesh, P())
    # In a multi-process run pmap spans every process's devices (its collectives and
    # axis_index are global) while each process feeds its own; checkpoints hold one copy
    # replicated over all of them.
    self._replicated = self._local_replicated
    if devices is None and jax.process_count() > 1:
      self._replicated = NamedSharding(Mesh(np.asarray(_devices_by_process()), (BATCH_AXIS,)), P())

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
        (len(self._devices),) + x.shape, self.sharding, copies
      )

    return jax.tree.map(stack_copies, state)

  def get_state(self, state):
    return jax.tree.map(lambda x: x[0], state)

  def to_replicated(self, state):
    if self._replicated is self._local_replicated:
      return self.get_state(state)

    def one_global_copy(x):  # This process's copies become its part of the global array.
      copies = [shard.data.reshape(x.shape[1:]) for shard in x.addressable_shards]
      return jax.make_array_from_single_device_arrays(x.shape[1:], self._replicated, copies)

    return jax.tree.map(one_global_copy, state)

  def put_batch(self, batch):
    return jax.device_put(batch, self.sharding)

  def _compile_flag_sum(self):
    count = jax.pmap(lambda f: jax.lax.psum(f[0], BATCH_AXIS), axis_name=BATCH_AXIS)
    return lambda flags: count(flags)[0]

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
    self.mesh = Mesh(
      np.asarray(devices if devices is not None else _devices_by_process()), (BATCH_AXIS,)
    )
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

  def local_copy(self, state):
    if jax.process_count() == 1:
      return state
    return jax.tree.map(lambda x: x.addressable_data(0), state)

  def put_batch(self, batch):
    # Process p's [local_devices, ...] block becomes rows p * local_devices ... of the global
    # [devices, ...] batch: the mesh lists each process's devices together, in process order,
    # as the input pipeline hands process p the p-th slice of every global batch.
    return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(self._batch_sharding, x), batch
    )

  def _compile_flag_sum(self):
    return jax.jit(
      jax.shard_map(
        lambda f: jax.lax.psum(f[0, 0], BATCH_AXIS),
        mesh=self.mesh,
        in_specs=P(BATCH_AXIS),
        out_specs=P(),
        check_vma=False,
      )
    )

  def _shard_mapped(self, step, out_specs):
    def per_device(state, batch, key):
      # Each device sees a [1, per_device, ...] block of the [devices, per_device, ...] batch.
      return step(state, jax.tree.map(lambda x: x[0], batch), key)

    return jax.shard_map(
      per_device,
      mesh=self.mesh,
      in_specs=(P(), P(BATCH_AXIS), P()),
      out_specs=out_specs,
      check_vma=False,
    )

  def compile_train_step(self, step):
    return jax.jit(self._shard_mapped(step, (P(), P())), donate_argnums=(0,))

  def compile_eval_step(self, step):
    return jax.jit(self._shard_mapped(step, P()))


def on_one_device(step: Callable) -> Callable:
  """A per-device `step(state, batch, key)` run alone: the same function of the same
  arguments, without a device axis, jittable and vmappable.

  The step's collectives over `BATCH_AXIS` (`pmean`, `psum`, `axis_index`) need an axis to
  run in; here they run in a `jax.vmap` over a device axis of size 1, on which they are
  identities (`axis_index` is 0), so the step computes what one device of a one-device
  `pmap` would.

  Args:
    step: a family's `train_step` or `eval_step`: state and batch per device, key shared.
  Returns:
    `(state, batch, key) -> outputs` for a state and a batch `[per_device, ...]` of one device.
  """

  def alone(state, batch, key):
    add_axis = lambda tree: jax.tree.map(lambda x: x[None], tree)
    outputs = jax.vmap(step, in_axes=(0, 0, None), axis_name=BATCH_AXIS)(
      add_axis(state), add_axis(batch), key
    )
    return jax.tree.map(lambda x: x[0], outputs)

  return alone


def _devices_by_process():
  """Every device of the run, each process's together, processes in order (device ids
  within a process): the order of the global batch's rows."""
  return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


PARALLEL_MODES = Registry[Callable[[], DataParallel]]("parallel mode")
PARALLEL_MODES.register("pmap")(PmapParallel)
PARALLEL_MODES.register("shard_map")(ShardMapParallel)
PARALLEL_MODES.register("auto")(ShardMapParallel)  # See the module docstring.


def get_data_parallel(mode: str) -> DataParallel:
  """The data-parallel mode named by `config.train.parallel`: "auto", "pmap" or "shard_map"."""
  return PARALLEL_MODES.get(mode)()
