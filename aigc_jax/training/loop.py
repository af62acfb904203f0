"""The one training loop, for every model family: `train_and_evaluate(config, workdir)`.

Data walks one way: host batches -> devices -> compiled step -> metrics kept on the device ->
(every `log_every` steps) host -> writers. The only host syncs are the periodic ones:
logging, evaluation and image grids, all in `_periodic_work`, the single place where the
loop stops to look at its state.
"""
import json
import os
import time
from typing import Any, Dict, List

import jax
import ml_collections
import numpy as np
import tqdm

from aigc_jax import data
from aigc_jax.errors import NonFiniteLossError
from aigc_jax.image_grid import interleave_pairs, save_image_grid
from aigc_jax.training.family import Family, get_family
from aigc_jax.training.parallel import DataParallel, get_data_parallel
from aigc_jax.training.writers import MetricWriter


def _split_keys(seed: int) -> Dict[str, jax.Array]:
  """The run's independent keys, all derived from the config seed."""
  init, train, evaluation, sample = jax.random.split(jax.random.PRNGKey(seed), 4)
  return {"init": init, "train": train, "eval": evaluation, "sample": sample}


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the run's full config as `config.json` in the workdir."""
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def _check_finite(step_metrics: List[Dict[str, np.ndarray]], first_step: int) -> None:
  """Raises NonFiniteLossError naming the first step whose loss is NaN or Inf."""
  for offset, metrics in enumerate(step_metrics):
    for name, value in metrics.items():
      if "loss" in name and not np.isfinite(value):
        raise NonFiniteLossError(
            f"Training stopped at step {first_step + offset}: {name} is {float(value)}; "
            "what was saved before that step is intact (lower optimizer.learning_rate or set "
            "optimizer.grad_clip_norm).")


def evaluate(family: Family, parallel: DataParallel, eval_step, state, config, key) -> Dict:
  """Means of the family's eval metrics over the whole test split (padding masked out)."""
  spec = data.get_dataset_spec(config.dataset.name)
  iterator = data.create_iterator(
      config.dataset.name, spec.test_split, global_batch_size=config.train.eval_batch_size,
      num_local_devices=parallel.num_local_devices, seed=config.seed, train=False,
      data_dir=config.dataset.data_dir or None)
  totals = None
  for index, batch in enumerate(iterator):
    sums = parallel.first_copy(
        eval_step(state, parallel.put_batch(batch), jax.random.fold_in(key, index)))
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  totals = jax.device_get(totals)
  weight = totals.pop("weight")
  return {name: float(value / weight) for name, value in totals.items()}


def write_image_grids(family: Family, state, images, key, directory: str, step: int,
                      num_samples: int) -> List[str]:
  """Sample grid and, for families with an encoder, test inputs beside reconstructions."""
  paths = []
  if family.generate is not None:
    samples = family.generate(state, key, num_samples)
    paths.append(save_image_grid(os.path.join(directory, f"samples_{step:08d}.png"),
                                 jax.device_get(samples), upscale=2))
  if family.reconstruct is not None:
    inputs = images[: max(num_samples // 2, 1)]
    outputs = family.reconstruct(state, inputs, key)
    pairs = interleave_pairs(inputs, jax.device_get(outputs))
    paths.append(save_image_grid(
        os.path.join(directory, f"reconstructions_{step:08d}.png"), pairs,
        num_columns=2 * int(np.ceil(np.sqrt(len(inputs)))), upscale=2))
  return paths


def _is_due(step: int, every: int, num_steps: int) -> bool:
  return step == num_steps or (every > 0 and step % every == 0)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Trains `config.model.family` on `config.dataset.name`; writes everything under `workdir`.

  Writes `config.json`, `metrics.jsonl`, `tensorboard/` and `images/*.png`. Returns the last
  logged training metrics and the last evaluation metrics, `{"train": {...}, "eval": {...}}`.
  Raises NonFiniteLossError if a loss becomes NaN or Inf.
  """
  spec = data.get_dataset_spec(config.dataset.name)
  family = get_family(config, spec.image_shape)
  parallel = get_data_parallel(config.train.parallel)
  keys = _split_keys(config.seed)
  train_cfg = config.train
  num_steps = train_cfg.num_steps
  is_chief = jax.process_index() == 0

  train_iter = data.create_iterator(
      config.dataset.name, spec.train_split, global_batch_size=train_cfg.batch_size,
      num_local_devices=parallel.num_local_devices, seed=config.seed, train=True,
      data_dir=config.dataset.data_dir or None)
  state = parallel.put_state(family.init(keys["init"]))
  train_step = parallel.compile_train_step(family.train_step)
  eval_step = parallel.compile_eval_step(family.eval_step)
  fixed_test_images = next(iter(data.create_iterator(
      config.dataset.name, spec.test_split, global_batch_size=train_cfg.eval_batch_size,
      num_local_devices=parallel.num_local_devices, seed=config.seed, train=False,
      data_dir=config.dataset.data_dir or None)))["image"].reshape((-1,) + spec.image_shape)

  os.makedirs(workdir, exist_ok=True)
  writer = MetricWriter(workdir) if is_chief else None
  if is_chief:
    write_config(config, workdir)
  initial_step = int(jax.device_get(parallel.get_state(state).step))
  pending: List[Dict[str, jax.Array]] = []  # Per-step metrics still on the device.
  results: Dict[str, Any] = {"train": {}, "eval": {}}
  progress = tqdm.tqdm(total=num_steps, initial=initial_step, disable=not is_chief,
                       desc=f"{config.model.family} on {config.dataset.name}", unit="step")
  timer = {"time": time.perf_counter(), "step": initial_step}

  def periodic_work(step: int) -> None:
    """Logging, evaluation and image grids: the one place the loop syncs with the devices."""
    nonlocal pending
    if pending and _is_due(step, train_cfg.log_every, num_steps):
      fetched = jax.device_get(pending)
      _check_finite(fetched, step - len(fetched) + 1)
      means = {name: float(np.mean([m[name] for m in fetched])) for name in fetched[0]}
      now = time.perf_counter()
      means["samples_per_second"] = (
          (step - timer["step"]) * train_cfg.batch_size / max(now - timer["time"], 1e-9))
      timer.update(time=now, step=step)
      pending = []
      results["train"] = means
      if is_chief:
        writer.write_scalars(step, "train", means)
        progress.set_postfix({k: f"{v:.4g}" for k, v in means.items()})
    if _is_due(step, train_cfg.eval_every, num_steps):
      results["eval"] = evaluate(family, parallel, eval_step, state, config,
                                 jax.random.fold_in(keys["eval"], step))
      if is_chief:
        writer.write_scalars(step, "eval", results["eval"])
    if is_chief and _is_due(step, train_cfg.sample_every, num_steps):
      write_image_grids(family, parallel.get_state(state), fixed_test_images,
                        keys["sample"], os.path.join(workdir, "images"), step,
                        train_cfg.num_samples)

  try:
    for step in range(initial_step + 1, num_steps + 1):
      batch = parallel.put_batch(next(train_iter))
      state, metrics = train_step(state, batch, keys["train"])
      pending.append(parallel.first_copy(metrics))
      progress.update(1)
      periodic_work(step)
  finally:
    progress.close()
    if writer is not None:
      writer.close()
  if is_chief:
    print(f"Outputs in {os.path.abspath(workdir)}: metrics.jsonl, tensorboard/, images/, "
          "config.json")
  results["state"] = parallel.get_state(state)
  return results
