"""The diffusion family's workloads of the harness (`benchmarks.run --only=diffusion`): the
denoisers' train steps and the samplers, each beside its PyTorch twin
(`benchmarks/torch_diffusion.py`).

Workloads are named `network/setting`, the setting being the experiment config they take:
- `ddpm_mlp/aithal`: Aithal et al.'s toy denoiser (TemporalMLP, 128 wide, 3 temporal layers
  sharing one set of weights) on 2-D points as `--protocol aithal` trains it
  (`experiments/configs/aithal_toy.py`: T = 1000, batch 10,000; 1,000 ancestral steps);
- `ddpm_mlp/benchmark`: the same network as the hallucination benchmark's 2-D diffusion base
  trains it (`hallucination_bases.py`, `ddpm_ring8.py`: T = 100, batch 512);
- `ddpm_unet32/shapes`: the shapes diffusion base's UNet (16 channels x (1, 2, 2) on 32x32x1,
  no attention; `hallucination_bases.py`), here at batch 64 and DDIM over 50 steps.

The JAX side is the library's: the family's train step compiled by the data-parallel wrapper
(`workloads.bare_step`), and `training.diffusion.make_sampler`.
"""

import collections
import dataclasses
import time
from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

NETWORKS = ("ddpm_mlp", "ddpm_unet32")
SAMPLE_SHAPES = {"ddpm_mlp": (2,), "ddpm_unet32": (32, 32, 1)}

# make_sampler reads only the EMA weights of the state it is given.
_SamplerState = collections.namedtuple("_SamplerState", ["ema_params"])


def network_of(workload: str) -> str:
  return workload.split("/")[0]


def config_of(workload: str) -> ml_collections.ConfigDict:
  """The experiment config of `workload` (module docstring)."""
  from experiments.configs import aithal_toy, hallucination_bases

  configs = {
    "ddpm_mlp/aithal": lambda: aithal_toy.get_config("grid25"),
    "ddpm_mlp/benchmark": lambda: hallucination_bases.get_config("gaussian_grid25,diffusion"),
    "ddpm_unet32/shapes": lambda: hallucination_bases.get_config("simple_shapes,diffusion"),
  }
  if workload not in configs:
    raise ValueError(f"unknown diffusion workload {workload!r}; choose from {', '.join(configs)}")
  return configs[workload]()


def train_step(workload: str, batch_size: int, parallel_mode: Optional[str] = None):
  """`workloads.BareStep` of `workload`'s train step at global batch `batch_size`, on random
  samples of its shape."""
  from benchmarks import workloads

  config = config_of(workload)
  config.train.batch_size = batch_size
  return workloads.bare_step(
    workload,
    parallel_mode=parallel_mode,
    config=config,
    sample_shape=SAMPLE_SHAPES[network_of(workload)],
  )


def torch_train_step(workload: str, batch_size: int) -> Callable[[], object]:
  from benchmarks import torch_diffusion

  return torch_diffusion.make_train_step(
    config_of(workload), SAMPLE_SHAPES[network_of(workload)], batch_size
  )


@dataclasses.dataclass
class Sampler:
  """One workload's compiled sampler, ready to time."""

  num_samples: int
  num_steps: int
  sampler: str  # ddpm (ancestral) or ddim.
  first_call_seconds: float  # Tracing + compilation + one call.
  flops_per_call: Optional[float]  # num_steps x XLA's FLOPs of one denoiser pass on the batch.
  run: Callable[[], None]  # Draws num_samples samples, blocking.


def _random_params(denoiser, inputs, t, seed: int):
  """Denoiser parameters drawn by numpy in the shapes of its init (the speed does not depend
  on them, and XLA's compile of the UNet's initialisers alone takes tens of seconds here)."""
  shapes = jax.eval_shape(denoiser.init, jax.random.PRNGKey(0), inputs, t)["params"]
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    values = rng.standard_normal(leaf.shape).astype(np.float32)
    if path[-1].key == "kernel":
      return values / np.sqrt(np.prod(leaf.shape[:-1]))
    return 1.0 + 0.1 * values if path[-1].key == "scale" else 0.1 * values

  return jax.tree_util.tree_map_with_path(draw, shapes)


def sampler(workload: str, num_samples: int, num_steps: int, seed: int = 0) -> Sampler:
  """`training.diffusion.make_sampler` of `workload`'s config with `num_steps` sampling steps,
  drawing `num_samples` samples per call (the config's sampler: DDPM for the MLP, DDIM for
  the UNet)."""
  from aigc_jax.training import diffusion

  config = config_of(workload)
  config.model.diffusion.sampling_steps = num_steps
  shape = SAMPLE_SHAPES[network_of(workload)]
  sample_fn = diffusion.make_sampler(config.model, shape)
  denoiser = diffusion.build_denoiser(config.model.diffusion, config.model.compute_dtype)
  inputs = jnp.zeros((num_samples,) + shape, jnp.float32)
  one_t = jnp.zeros((1,), jnp.int32)
  state = _SamplerState(ema_params=_random_params(denoiser, inputs, one_t, seed))
  key = jax.random.PRNGKey(seed + 1)

  def run():
    jax.block_until_ready(sample_fn(state, key, num_samples))

  start = time.perf_counter()
  run()
  first_call = time.perf_counter() - start
  try:  # One pass of the denoiser as the sampler calls it: all samples, one timestep.
    compiled = jax.jit(denoiser.apply).lower({"params": state.ema_params}, inputs, one_t).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost["flops"]) * num_steps if cost and "flops" in cost else None
  except Exception:  # pylint: disable=broad-except  (backends without cost analysis)
    flops = None
  return Sampler(
    num_samples=num_samples,
    num_steps=num_steps,
    sampler=config.model.diffusion.sampler,
    first_call_seconds=first_call,
    flops_per_call=flops,
    run=run,
  )


def torch_sampler(workload: str, num_samples: int, num_steps: int) -> Callable[[], object]:
  from benchmarks import torch_diffusion

  config = config_of(workload)
  config.model.diffusion.sampling_steps = num_steps
  return torch_diffusion.make_sampler(config, SAMPLE_SHAPES[network_of(workload)], num_samples)


def selected(networks: Tuple[str, ...], workloads: Dict[str, int]) -> Tuple[str, ...]:
  """The workloads (keys of `workloads`, sized per workload) of `networks`, in their order."""
  return tuple(w for w in workloads if network_of(w) in networks)
