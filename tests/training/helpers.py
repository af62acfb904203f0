"""Shared test helpers: tiny configs and runs of the per-device steps on N devices."""

import jax
import numpy as np

from aigc_jax import config_rules
from aigc_jax.training.family import get_family
from aigc_jax.training.parallel import PmapParallel, ShardMapParallel
from experiments.configs import base


def tiny_config(family: str, body: str = "mlp"):
  """A small config of `family` on digits28 with `body` encoder/decoder."""
  config = base.get_base_config()
  config.model.family = family
  config.model.latent_dim = 8
  if body == "conv":
    norm = "batch" if family == "gan" else "none"
    config.model.encoder = base.body("conv", (8, 16), "leaky_relu", norm=norm)
    config.model.decoder = base.body("conv", (16, 8), "relu", norm=norm)
  else:
    config.model.encoder = base.body("mlp", (32,), "relu")
    config.model.decoder = base.body("mlp", (32,), "relu")
  config.train.batch_size = 16
  config.train.eval_batch_size = 64
  config.train.num_steps = 4
  if family == "gan":
    config.checkpoint.keep_best = 0  # GAN losses rank nothing.
  return config


def random_batches(num_steps, global_batch, shape=(28, 28, 1), seed=0):
  rng = np.random.RandomState(seed)
  return [
    {
      "image": rng.rand(global_batch, *shape).astype(np.float32),
      "label": rng.randint(0, 10, global_batch).astype(np.int32),
      "mask": np.ones(global_batch, np.float32),
    }
    for _ in range(num_steps)
  ]


def random_point_batches(num_steps, global_batch, dimension=2, seed=0):
  """Batches of standard normal points `[global_batch, dimension]`, as the 2-D datasets give."""
  rng = np.random.RandomState(seed)
  return [
    {
      "image": rng.randn(global_batch, dimension).astype(np.float32),
      "label": np.zeros(global_batch, np.int32),
      "mask": np.ones(global_batch, np.float32),
    }
    for _ in range(num_steps)
  ]


def device_layout(batch, num_devices):
  return {k: v.reshape((num_devices, -1) + v.shape[1:]) for k, v in batch.items()}


def run_steps(config, batches, parallel, seed=0):
  """Runs the family's train step over `batches` under `parallel`; returns (state, metrics).

  Checks the batch sizes over the devices first, as the loop does.
  """
  config_rules.check_batch_sizes(config, parallel.num_local_devices)
  family = get_family(config, batches[0]["image"].shape[1:])
  state = parallel.put_state(family.init(jax.random.PRNGKey(seed)))
  step = parallel.compile_train_step(family.train_step)
  metrics = []
  for batch in batches:
    state, m = step(
      state,
      parallel.put_batch(device_layout(batch, parallel.num_local_devices)),
      jax.random.PRNGKey(seed + 1),
    )
    metrics.append(jax.device_get(parallel.first_copy(m)))
  return jax.device_get(parallel.get_state(state)), metrics


def initial_state(config, shape=(28, 28, 1), seed=0):
  """The host state `run_steps` starts from."""
  return get_family(config, shape).init(jax.random.PRNGKey(seed))


def parameters(state):
  """{network name: its trained `params`}: the GAN's two networks, or the one of the others."""
  if hasattr(state, "generator"):
    return {"generator": state.generator.params, "discriminator": state.discriminator.params}
  return {"model": state.params}


def pmap_on(num_devices):
  return PmapParallel(jax.local_devices()[:num_devices])


def shard_map_on(num_devices):
  return ShardMapParallel(jax.local_devices()[:num_devices])


def max_abs_difference(tree_a, tree_b):
  """Largest |a - b| over all leaves; inf where a NaN or Inf stands in either tree.

  (A NaN must never pass for "close": Python's max() silently skips it.)
  """
  leaves_a, leaves_b = jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)
  assert len(leaves_a) == len(leaves_b)
  largest = 0.0
  for a, b in zip(leaves_a, leaves_b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
      return float("inf")
    if a.size:
      largest = max(largest, float(np.max(np.abs(a - b))))
  return largest
