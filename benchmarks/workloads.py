"""The JAX workloads the harness times: bare train steps, the matrix-product peak, the training
loop, the input pipeline and evaluation.

Every function builds what it times the way the library builds it (families, data-parallel
modes, the loop, `create_iterator`, the metric functions), so the numbers are the library's.
"""

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from benchmarks import timing

# The reference networks: harness name -> experiment config module.
NETWORK_CONFIGS = {"mlp_vae": "mlp_vae", "dcgan28": "dcgan28", "conv_ae": "conv_ae_mnist"}
DATASET = "digits28"  # Offline, and shaped like MNIST (28x28x1); MNIST needs a download.
IMAGE_SHAPE = (28, 28, 1)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _summary_kept_off_stdout():
  """Swallows the end-of-run summary that `train_and_evaluate` prints: it names a temporary
  workdir, deleted right after, among the harness's own output."""
  return contextlib.redirect_stdout(io.StringIO())


def network_config(name: str) -> ml_collections.ConfigDict:
  """The experiment config of a reference network, on `DATASET`."""
  if name not in NETWORK_CONFIGS:
    raise ValueError(f"unknown network {name!r}; choose from {', '.join(NETWORK_CONFIGS)}")
  module = __import__(f"experiments.configs.{NETWORK_CONFIGS[name]}", fromlist=["get_config"])
  config = module.get_config()
  config.dataset.name = DATASET
  return config


@dataclasses.dataclass
class BareStep:
  """One network's compiled train step on fixed device data, ready to time."""

  name: str
  batch_size: int
  num_devices: int
  first_call_seconds: float  # Tracing + compilation + one step: what a run pays once.
  flops_per_step: Optional[float]  # XLA's cost analysis, summed over the devices.
  run: Callable[[], None]  # One step, blocking until its outputs are ready.
  put_batch: Callable[[], None]  # One host batch -> devices, blocking.
  hlo_text: Callable[[], str]  # The optimised HLO of the compiled step.


def bare_step(
  name: str,
  devices: Optional[Sequence] = None,
  seed: int = 0,
  parallel_mode: Optional[str] = None,
  config: Optional[ml_collections.ConfigDict] = None,
  sample_shape: Sequence[int] = IMAGE_SHAPE,
) -> BareStep:
  """The train step of network `name` as the loop compiles it, on a random batch.

  `devices`: the devices to run on (default: all local ones); the config's global batch is
  split over them. `parallel_mode`: "auto", "pmap" or "shard_map" (default: the config's).
  `config` and `sample_shape`: another network than the reference ones (default: `name`'s
  config, on images of `IMAGE_SHAPE`), e.g. the diffusion workloads'.
  """
  from aigc_jax.training.family import get_family
  from aigc_jax.training.parallel import PARALLEL_MODES

  config = network_config(name) if config is None else config
  sample_shape = tuple(sample_shape)
  devices = list(devices) if devices is not None else jax.local_devices()
  parallel = PARALLEL_MODES.get(parallel_mode or config.train.parallel)(devices)
  family = get_family(config, sample_shape)
  num_devices, batch_size = len(devices), config.train.batch_size
  rng = np.random.default_rng(seed)
  host_batch = {
    "image": rng.random((num_devices, batch_size // num_devices) + sample_shape, np.float32),
    "label": rng.integers(0, 10, (num_devices, batch_size // num_devices)).astype(np.int32),
    "mask": np.ones((num_devices, batch_size // num_devices), np.float32),
  }
  batch = parallel.put_batch(host_batch)
  key = jax.device_put(jax.random.PRNGKey(seed + 1), parallel.replicated_sharding)
  train_step = parallel.compile_train_step(family.train_step)
  state = parallel.put_state(jax.jit(family.init)(jax.random.PRNGKey(seed)))

  holder = {"state": state}

  def run():
    holder["state"], metrics = train_step(holder["state"], batch, key)
    jax.block_until_ready((holder["state"], metrics))

  start = time.perf_counter()
  run()
  first_call = time.perf_counter() - start

  compiled = train_step.lower(holder["state"], batch, key).compile()
  try:  # Per-device FLOPs of the compiled step (pmap and shard_map both report per device).
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost["flops"]) * num_devices if cost and "flops" in cost else None
  except Exception:  # pylint: disable=broad-except  (backends without cost analysis)
    flops = None

  def put_batch():
    jax.block_until_ready(parallel.put_batch(host_batch))

  return BareStep(
    name=name,
    batch_size=batch_size,
    num_devices=num_devices,
    first_call_seconds=first_call,
    flops_per_step=flops,
    run=run,
    put_batch=put_batch,
    hlo_text=compiled.as_text,
  )


def matmul_peak(size: int = 2048):
  """`(flops, run)`: a jitted float32 [size, size] @ [size, size] on the default device."""
  keys = jax.random.split(jax.random.PRNGKey(0))
  a = jax.random.normal(keys[0], (size, size), jnp.float32)
  b = jax.random.normal(keys[1], (size, size), jnp.float32)
  product = jax.jit(jnp.matmul)

  def run():
    product(a, b).block_until_ready()

  run()
  return 2.0 * size**3, run


def training_loop(
  name: str,
  num_steps: int,
  log_every: int,
  save_every: int,
  data_dir: Optional[str],
  parallel_mode: Optional[str] = None,
) -> Dict[str, object]:
  """Samples/s of `training.train_and_evaluate` for network `name` on `DATASET`.

  Logging every `log_every` steps and (async) checkpoints every `save_every` steps are on;
  evaluation and image grids run only at the end. The rate is over the logging windows
  between the first (which holds compilation) and the last (the final save, evaluation and
  grids): data, dispatch, host syncs and periodic saves are all in it.
  """
  from aigc_jax import training

  config = network_config(name)
  config.dataset.data_dir = data_dir or ""
  config.train.num_steps = num_steps
  config.train.log_every = log_every
  config.train.eval_every = 0
  config.train.sample_every = 0
  config.checkpoint.save_every = save_every
  if parallel_mode:
    config.train.parallel = parallel_mode
  if num_steps < 3 * log_every:
    raise ValueError(f"num_steps {num_steps} must be at least 3 * log_every ({log_every})")
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    with _summary_kept_off_stdout():
      training.train_and_evaluate(config, workdir)
    total = time.perf_counter() - start
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
      rows = [r for r in map(json.loads, f) if r["split"] == "train"]
  batch_size = config.train.batch_size
  windows, previous_step = [], 0
  for row in rows:
    steps = row["step"] - previous_step
    windows.append({"steps": steps, "seconds": steps * batch_size / row["samples_per_second"]})
    previous_step = row["step"]
  interior = windows[1:-1]
  steps = sum(w["steps"] for w in interior)
  seconds = sum(w["seconds"] for w in interior)
  return {
    "num_steps": num_steps,
    "log_every": log_every,
    "save_every": save_every,
    "batch_size": batch_size,
    "wall_seconds": total,
    "window_seconds": [w["seconds"] for w in windows],
    "timed_steps": steps,
    "samples_per_second": steps * batch_size / seconds,
  }


def input_pipeline(
  batch_size: int, num_batches: int, num_local_devices: int, data_dir: Optional[str]
) -> Dict[str, object]:
  """Seconds per batch of `data.create_iterator` on the training split (after 3 batches)."""
  from aigc_jax import data

  spec = data.get_dataset_spec(DATASET)
  start = time.perf_counter()
  iterator = data.create_iterator(
    DATASET,
    spec.train_split,
    global_batch_size=batch_size,
    num_local_devices=num_local_devices,
    seed=0,
    train=True,
    data_dir=data_dir,
  )
  first_batch = next(iterator)
  setup = time.perf_counter() - start
  del first_batch
  for _ in range(2):
    next(iterator)
  seconds = timing.time_calls(lambda: next(iterator), num_batches)
  summary = timing.summarize(seconds)
  return {
    "dataset": DATASET,
    "batch_size": batch_size,
    "setup_seconds": setup,
    "seconds_per_batch": summary,
    "batches_per_second": 1.0 / summary["median"],
  }


def ssim_throughput(num_images: int, repeats: int) -> Dict[str, object]:
  """Seconds of `fidelity.ssim` on `num_images` pairs of random 28x28 images."""
  from aigc_jax.evaluation import fidelity

  rng = np.random.default_rng(0)
  a = rng.random((num_images,) + IMAGE_SHAPE, np.float32)
  b = np.clip(a + 0.1 * rng.standard_normal(a.shape, np.float32), 0.0, 1.0)

  def run():
    np.asarray(fidelity.ssim(a, b))

  first = timing.time_calls(run, 1)[0]
  return {
    "num_images": num_images,
    "first_call_seconds": first,
    "seconds": timing.summarize(timing.time_calls(run, repeats)),
  }


def prdc_throughput(num_features: int, width: int, repeats: int) -> Dict[str, object]:
  """Seconds of precision/recall (k=3) plus density/coverage (k=5), `num_features` each side."""
  from aigc_jax.evaluation import distribution

  rng = np.random.default_rng(0)
  real = rng.standard_normal((num_features, width)).astype(np.float32)
  fake = (1.1 * rng.standard_normal((num_features, width)) + 0.1).astype(np.float32)

  def run():
    jax.block_until_ready(
      (
        distribution.precision_recall(real, fake, k=3),
        distribution.density_coverage(real, fake, k=5),
      )
    )

  first = timing.time_calls(run, 1)[0]
  return {
    "num_real": num_features,
    "num_fake": num_features,
    "width": width,
    "first_call_seconds": first,
    "seconds": timing.summarize(timing.time_calls(run, repeats)),
  }


def evaluate_cli(
  num_samples: int, classifier_steps: int, model_steps: int, data_dir: Optional[str]
) -> Dict[str, object]:
  """Wall seconds of `python -m experiments.evaluate` on a short `vae_digits` run.

  Trains the digits28 classifier and the default VAE for a few steps first (their quality
  does not change the evaluation's cost), then times the whole command, from process start
  to exit, with `num_samples` samples.
  """
  from aigc_jax import training
  from experiments.configs import classifier_digits, vae_digits

  with tempfile.TemporaryDirectory() as root:
    data_dir = data_dir or os.path.join(root, "tfds")
    os.makedirs(data_dir, exist_ok=True)  # config.dataset.data_dir must exist.
    runs = {}
    for run_name, config, steps in [
      ("classifier", classifier_digits.get_config(), classifier_steps),
      ("vae", vae_digits.get_config(), model_steps),
    ]:
      config.dataset.data_dir = data_dir
      config.train.num_steps = steps
      config.train.log_every = steps
      config.train.eval_every = 0
      config.train.sample_every = 0
      runs[run_name] = os.path.join(root, run_name)
      with _summary_kept_off_stdout():
        training.train_and_evaluate(config, runs[run_name])
    command = [
      sys.executable,
      "-m",
      "experiments.evaluate",
      "--workdir",
      runs["vae"],
      "--classifier_workdir",
      runs["classifier"],
      f"--num_samples={num_samples}",
      "--data_dir",
      data_dir,
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
      raise RuntimeError(f"experiments.evaluate failed: {result.stderr[-2000:]}")
  return {"config": "vae_digits", "num_samples": num_samples, "seconds": seconds}


def run_child(args: List[str], num_cpu_devices: int) -> Dict[str, object]:
  """Runs `python -m benchmarks.run ARGS` with `num_cpu_devices` forced host devices.

  The device count must be fixed before jax starts, hence a process per count. Returns the
  JSON the child wrote.
  """
  flags = [
    f
    for f in os.environ.get("XLA_FLAGS", "").split()
    if not f.startswith("--xla_force_host_platform_device_count")
  ]
  flags.append(f"--xla_force_host_platform_device_count={num_cpu_devices}")
  env = dict(os.environ, XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu")
  with tempfile.TemporaryDirectory() as out_dir:
    output = os.path.join(out_dir, "child.json")
    result = subprocess.run(
      [sys.executable, "-m", "benchmarks.run", *args, f"--child_output={output}"],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      check=False,
    )
    if result.returncode != 0:
      raise RuntimeError(
        f"benchmark child with {num_cpu_devices} devices failed: {result.stderr[-2000:]}"
      )
    with open(output, encoding="utf-8") as f:
      return json.load(f)


# The multi-seed section's networks: harness name -> `hallucination_bases` config argument.
MULTI_SEED_NETWORKS = {"shapes_gan": "simple_shapes,gan", "shapes_ae": "simple_shapes,ae"}
SHAPES_IMAGE_SHAPE = (32, 32, 1)
# How the S seeds' steps run: one seed per compiled call from Python, all S vmapped in one
# call per step, or all S vmapped with the steps of a chunk under `lax.scan`.
MULTI_SEED_MODES = ("python_per_seed", "vmap", "vmap_scan")


@dataclasses.dataclass
class MultiSeedRun:
  """S seeds of one network advanced by `steps_per_call` steps per `run()`, ready to time."""

  network: str
  conv_impl: str
  mode: str
  num_seeds: int
  steps_per_call: int
  first_call_seconds: float  # Compilation + the first `run()`.
  run: Callable[[], None]  # `steps_per_call` steps of every seed, blocking.


def multi_seed_flops_per_step(network: str, conv_impl: str) -> Optional[float]:
  """XLA's FLOPs of one single-seed train step of `network` (cost analysis; None if absent)."""
  trainer = _multi_seed_trainer(network, conv_impl, 1, "python_per_seed")
  states = trainer.init()
  step = trainer._single_step()  # pylint: disable=protected-access  (the compiled step itself)
  compiled = step.lower(
    states, trainer.keys["train"], trainer.keys["data"], trainer._samples, trainer._labels
  ).compile()  # pylint: disable=protected-access
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None
  except Exception:  # pylint: disable=broad-except  (backends without cost analysis)
    return None


def _multi_seed_trainer(network: str, conv_impl: str, num_seeds: int, mode: str):
  from aigc_jax.training.family import get_family
  from aigc_jax.training.multi_seed import MultiSeedTrainer
  from experiments.configs import hallucination_bases

  config = hallucination_bases.get_config(MULTI_SEED_NETWORKS[network])
  config.model.conv_impl = conv_impl
  family = get_family(config, SHAPES_IMAGE_SHAPE)
  rng = np.random.default_rng(0)
  num_examples = 600
  samples = (rng.random((num_examples,) + SHAPES_IMAGE_SHAPE) < 0.3).astype(np.float32)
  labels = rng.integers(0, 4, num_examples).astype(np.int32)
  return MultiSeedTrainer(
    family,
    samples,
    labels,
    batch_size=config.train.batch_size,
    seeds=range(num_seeds),
    seeds_per_call=1 if mode == "python_per_seed" else None,
    scan_steps=mode == "vmap_scan",
  )


def multi_seed_run(
  network: str, conv_impl: str, num_seeds: int, mode: str, steps_per_call: int
) -> MultiSeedRun:
  """`training.multi_seed.MultiSeedTrainer` on random 32x32 binary images, as the shapes
  benchmark trains: `mode` is one of `MULTI_SEED_MODES`, `conv_impl` is `model.conv_impl`."""
  if mode not in MULTI_SEED_MODES:
    raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MULTI_SEED_MODES)}")
  trainer = _multi_seed_trainer(network, conv_impl, num_seeds, mode)
  holder = {"states": trainer.init()}

  def run():
    holder["states"], metrics = trainer.run(holder["states"], steps_per_call)
    jax.block_until_ready((holder["states"], metrics))

  start = time.perf_counter()
  run()
  return MultiSeedRun(
    network=network,
    conv_impl=conv_impl,
    mode=mode,
    num_seeds=num_seeds,
    steps_per_call=steps_per_call,
    first_call_seconds=time.perf_counter() - start,
    run=run,
  )
