"""Per-example randomness that does not depend on how the batch is split across devices.

Example i of the global batch (its position counted over all devices and hosts, in device
order) draws its noise from `fold_in(step_key, i)`. The same example therefore gets the same
noise on 1 device or on 8, which is what lets pmap runs match single-device runs bitwise-close.
"""

import jax
import jax.numpy as jnp

BATCH_AXIS = "batch"  # The named device axis every step's collectives run over.


def global_example_indices(per_device_batch: int, axis_name: str = BATCH_AXIS) -> jax.Array:
  """Indices `[per_device_batch]` int32 of this device's examples within the global batch.

  Must run inside pmap / shard_map over `axis_name`; device d holds examples
  `d * per_device_batch ... (d + 1) * per_device_batch - 1`.
  """
  device = jax.lax.axis_index(axis_name)
  return device * per_device_batch + jnp.arange(per_device_batch, dtype=jnp.int32)


def per_example_normal(key: jax.Array, indices: jax.Array, shape) -> jax.Array:
  """Standard normal noise `[len(indices), *shape]`; row j comes from `fold_in(key, indices[j])`."""
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), shape))(indices)
