"""The one training loop, for every model family: `train_and_evaluate(config, workdir)`.

Data walks one way: host batches -> devices -> compiled step -> metrics kept on the device ->
host -> writers and checkpoints. The only host syncs are the periodic ones (NaN check,
logging, saving, evaluation, image grids), all in `periodic_work`, the single place where
the loop stops to look at its state.
"""

import collections
import contextlib
import datetime
import json
import os
import time
from typing import Any, Dict, List, Optional

import flax
import jax
import ml_collections
import numpy as np
import tqdm

from aigc_jax import checkpointing, config_rules, console, data, distributed
from aigc_jax.errors import NonFiniteLossError, UnknownNameError, WorkdirError
from aigc_jax.training.family import Family, get_family
from aigc_jax.training.interrupts import (
  TrainingInterrupted,
  TrainingNotStarted,
  termination_signals,
)
from aigc_jax.training.parallel import DataParallel, get_data_parallel, on_one_device
from aigc_jax.training import optimizers, writers
from aigc_jax.training.writers import MetricWriter
from aigc_jax.workdir import WorkdirLock, ensure_writable, has_checkpoints, set_aside_previous_run


# Steps dispatched but not finished, at most. Without a bound the host runs ahead by hundreds
# of steps when batches are cheap; on XLA:CPU with several (forced host) devices the queued
# executions then starve one device's collective of a thread, and after 40 s the runtime
# aborts the process ("Termination timeout for all reduce ... only 7 of 8 arrived"). Two in
# flight keep the device busy while the host prepares the next batch.
_MAX_STEPS_IN_FLIGHT = 2


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
          "optimizer.grad_clip_norm)."
        )


def evaluate(
  family: Family, parallel: DataParallel, eval_step, state, config, key, test_arrays
) -> Dict:
  """Means of the family's eval metrics over the whole test split (padding masked out).

  `test_arrays`: the test split as `data.load_split_arrays` returns it.
  """
  spec = data.get_dataset_spec(config.dataset.name)
  iterator = data.create_iterator(
    config.dataset.name,
    spec.test_split,
    global_batch_size=config.train.eval_batch_size,
    num_local_devices=parallel.num_local_devices,
    seed=config.seed,
    train=False,
    arrays=test_arrays,
  )
  totals, in_flight = None, collections.deque()
  for index, batch in enumerate(iterator):
    sums = parallel.first_copy(
      eval_step(state, parallel.put_batch(batch), jax.random.fold_in(key, index))
    )
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    in_flight.append(sums)
    if len(in_flight) > _MAX_STEPS_IN_FLIGHT:
      jax.block_until_ready(in_flight.popleft())
  totals = jax.device_get(totals)
  weight = totals.pop("weight")
  return {name: float(value / weight) for name, value in totals.items()}


def _is_due(step: int, every: int, num_steps: int) -> bool:
  return step == num_steps or (every > 0 and step % every == 0)


def _truncate_metrics(workdir: str, last_step: int) -> None:
  """Drops `metrics.jsonl` rows after `last_step`: the lost work of an interrupted run."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return
  with open(path, encoding="utf-8") as f:
    rows = [line for line in f if line.strip() and json.loads(line)["step"] <= last_step]
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(rows)


def _eval_metric_names(family: Family, abstract_state, image_shape) -> List[str]:
  """Names of the family's evaluation metrics, found by tracing (no computation)."""
  batch = {
    "image": jax.ShapeDtypeStruct((1,) + tuple(image_shape), np.float32),
    "label": jax.ShapeDtypeStruct((1,), np.int32),
    "mask": jax.ShapeDtypeStruct((1,), np.float32),
  }
  traced = jax.eval_shape(
    on_one_device(family.eval_step), abstract_state, batch, jax.ShapeDtypeStruct((2,), np.uint32)
  )
  return sorted(name for name in traced if name != "weight")


def _make_checkpointer(config, workdir, family, abstract_state, image_shape):
  ckpt = config.checkpoint
  if ckpt.keep_best > 0:
    names = _eval_metric_names(family, abstract_state, image_shape)
    if ckpt.best_metric not in names:
      raise UnknownNameError(
        f"checkpoint.best_metric {ckpt.best_metric!r} is not an evaluation metric of family "
        f"{config.model.family!r}; valid choices are: {', '.join(names)} (or set "
        "checkpoint.keep_best=0)."
      )
  return checkpointing.Checkpointer(
    workdir,
    keep_last=ckpt.keep_last,
    keep_best=ckpt.keep_best,
    best_metric=ckpt.best_metric,
    best_mode=ckpt.best_mode,
    async_save=ckpt.async_save,
  )


def _close_all(closers, quietly: bool) -> None:
  """Calls every closer; with `quietly`, a failing one is reported instead of raised."""
  for close in closers:
    try:
      close()
    except Exception as e:  # pylint: disable=broad-except
      if not quietly:
        raise
      console.warning(
        f"While stopping after an error, {getattr(close, '__qualname__', close)} also failed: {e}"
      )


def _record_resume(workdir: str, step: int, num_steps: int, record: Dict[str, Any]) -> None:
  """Appends one line to `resumes.jsonl`: when, from which step, and what the config changed.

  `config.json` keeps the config the run started with; this file is the history of changes.
  """
  row = {
    "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    "from_step": step,
    "num_steps": num_steps,
    **record,
  }
  with open(os.path.join(workdir, "resumes.jsonl"), "a", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")


def _summary(
  config, results, initial_step: int, num_steps: int, seconds: float, workdir: str
) -> List[str]:
  """The end-of-run lines: what ran, the final train and eval metrics, where outputs went."""
  start = f"resumed at step {initial_step}, " if initial_step else ""
  lines = [
    f"Finished {config.model.family} on {config.dataset.name}: step {num_steps} "
    f"({start}{seconds:.0f} s)."
  ]
  train = {k: v for k, v in results["train"].items() if k != "samples_per_second"}
  if train:
    lines.append(f"  train: {console.format_metrics(train)}")
  if results["eval"]:
    lines.append(f"  eval:  {console.format_metrics(results['eval'])}")
  outputs = [
    n
    for n in (
      "metrics.jsonl",
      "tensorboard/",
      "images/",
      "checkpoints/",
      "checkpoints_best/",
      "config.json",
      "resumes.jsonl",
    )
    if os.path.exists(os.path.join(workdir, n))
  ]
  lines.append(f"Outputs in {os.path.abspath(workdir)}: {', '.join(outputs)}")
  return lines


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  fresh: bool = False,
  allow_config_change: bool = False,
) -> Dict[str, Any]:
  """Trains `config.model.family` on `config.dataset.name`; writes everything under `workdir`.

  Checks every config value first (`config_rules.check_config`), then locks the workdir
  (one run per workdir; `aigc_jax.workdir`). Resumes from the newest readable checkpoint unless
  `fresh`, which first moves an earlier run's outputs into `workdir/discarded/<time>/`; a
  run that finds no checkpoint but an earlier run's logs sets those aside the same way. A
  resumed run may change only `config_rules.CHANGEABLE_ON_RESUME` unless
  `allow_config_change`; each resume is recorded in `resumes.jsonl`, and `config.json`
  keeps the config the run started with. Writes `config.json`, `metrics.jsonl`,
  `tensorboard/`, `images/*.png` and `checkpoints/`.

  Returns:
    `{"train": last logged training metrics, "eval": last evaluation metrics, "state": the
    final state (one copy), "step": the final step}`.
  Raises:
    ConfigError (before any work) for a value outside its allowed range, or a resume with
    a changed config; WorkdirBusyError if another run holds the workdir;
    NonFiniteLossError if a loss becomes NaN or Inf (nothing saved before is touched);
    TrainingInterrupted after SIGTERM/SIGINT, once a checkpoint of the current step is saved.
  """
  config_rules.check_config(config)  # Before anything is read or written.
  spec = data.get_dataset_spec(config.dataset.name)
  family = get_family(config, spec.sample_shape)
  parallel = get_data_parallel(config.train.parallel)
  config_rules.check_batch_sizes(config, jax.process_count() * parallel.num_local_devices)
  ensure_writable(workdir)
  with _locked(workdir):
    return _train(
      config, workdir, spec, family, parallel, fresh=fresh, allow_config_change=allow_config_change
    )


@contextlib.contextmanager
def _locked(workdir: str):
  """The workdir lock, taken by process 0 for every process of the run.

  In a multi-process run process 0 tells the others whether it got the lock, so that a second
  run is refused on every one of its processes, not on process 0 alone.
  """
  lock = WorkdirLock(workdir, jax.process_index())
  refusal = ""
  try:
    lock.acquire()
  except WorkdirError as e:
    if not distributed.is_multiprocess():
      raise
    refusal, error = str(e), e
  else:
    error = None
  refusal = distributed.message_from_process_0(refusal)
  if refusal:
    raise error if error is not None else WorkdirError(refusal)
  try:
    yield lock
  finally:
    lock.release()


def _set_aside_earlier_run(workdir: str, fresh: bool) -> None:
  """With `fresh`, or when there is no checkpoint to resume, moves an earlier run's outputs
  (logs, config, images, eval/) into `discarded/<time>/`, so two runs never share a log."""
  if not fresh and has_checkpoints(workdir):
    return
  moved = set_aside_previous_run(workdir)
  if moved:
    console.event(
      f"Starting fresh: the previous run's outputs are in {moved}."
      if fresh
      else "No checkpoint to resume from: starting at step 0; the earlier run's logs "
      f"are in {moved}."
    )


def _start_or_resume(
  config,
  workdir,
  family,
  parallel,
  checkpointer,
  keys,
  abstract_state,
  train_iter,
  allow_config_change,
):
  """The state to train from: the newest readable checkpoint's, or a new one.

  A resume checks the checkpoint's config against this one (`config_rules.check_resume`)
  before reading its arrays; the chief then drops the lost part of the run's history
  (metrics rows and best checkpoints after the step) and records the resume.

  Returns:
    (state on the devices, training key, step, metrics saved with the checkpoint or {}).
  """
  is_chief = jax.process_index() == 0
  resume: Dict[str, Any] = {}

  def check_saved_config(saved: Dict[str, Any], step: int) -> None:
    resume.update(
      config_rules.check_resume(
        saved,
        config,
        step,
        checkpointer.directory,
        allow_config_change,
        learning_rate_schedule=optimizers.learning_rate_schedule,
      )
    )

  restored = checkpointer.restore_latest(
    checkpointing.abstract_state_tree(abstract_state, keys["train"], parallel.replicated_sharding),
    train_iter,
    check_saved_config,
  )
  if restored is None:
    if is_chief:
      write_config(config, workdir)
    # Jitted: one compile instead of one per initialiser op (seconds at start-up), same values.
    return parallel.put_state(jax.jit(family.init)(keys["init"])), keys["train"], 0, {}
  state = parallel.from_replicated(
    flax.serialization.from_state_dict(abstract_state, restored.train_state)
  )
  step, num_steps = restored.step, config.train.num_steps
  if step < num_steps:
    checkpointer.set_aside_best_after(step)  # Every process: orbax's view of them changes.
  if is_chief and step < num_steps:
    _truncate_metrics(workdir, step)
    _record_resume(workdir, step, num_steps, resume)
    changed = ", ".join(f"{k} {v['saved']} -> {v['new']}" for k, v in resume["changes"].items())
    console.event(
      f"Resuming from step {step} of {checkpointer.directory}"
      + (f" with {changed}" if changed else "")
      + "."
    )
  return state, restored.rng, step, restored.metrics


class _AgreedStop:
  """Multi-process runs: every process stops at the same step when any one was signalled.

  Every `EVERY` steps the processes sum their "SIGTERM/SIGINT received" flags with one tiny
  collective, and read the sum dispatched `EVERY` steps before (long done, so reading it
  never stalls the host, which keeps running ahead of the devices). All processes read the
  same sum at the same step, so all save that step and exit 75, at most 2 * EVERY steps after
  the signal. Checking every step instead cost 10-25% of a small model's step time on CPU.
  """

  EVERY = 10

  def __init__(self, parallel: DataParallel, signals):
    self._parallel, self._signals = parallel, signals
    self._counts = collections.deque()

  def __call__(self, step: int) -> Optional[str]:
    if step % self.EVERY:
      return None
    self._counts.append(self._parallel.count_flags(self._signals.signal_name is not None))
    if len(self._counts) < 2 or int(jax.device_get(self._counts.popleft())) == 0:
      return None
    return self._signals.signal_name or "SIGTERM or SIGINT (sent to another process of the run)"


def _train(config, workdir, spec, family, parallel, *, fresh, allow_config_change):
  """`train_and_evaluate` once the config is checked and the workdir is locked."""
  started = time.perf_counter()
  keys = _split_keys(config.seed)
  train_cfg = config.train
  num_steps = train_cfg.num_steps
  is_chief = jax.process_index() == 0
  data_dir = config.dataset.data_dir or None

  if is_chief:
    _set_aside_earlier_run(workdir, fresh)
  distributed.barrier("earlier run set aside")  # Before any process opens checkpoints/.
  abstract_state = jax.eval_shape(family.init, keys["init"])
  checkpointer = _make_checkpointer(config, workdir, family, abstract_state, spec.sample_shape)
  closers = [checkpointer.close]  # Closed in this order, however the run ends.
  finished = False
  try:
    train_arrays = data.load_split_arrays(config.dataset.name, spec.train_split, data_dir)
    if train_cfg.batch_size > len(train_arrays[1]) and is_chief:
      console.warning(
        f"train.batch_size {train_cfg.batch_size} is larger than the training split "
        f"({len(train_arrays[1])} examples of {config.dataset.name}): every batch repeats "
        "examples."
      )
    train_iter = data.create_iterator(
      config.dataset.name,
      spec.train_split,
      global_batch_size=train_cfg.batch_size,
      num_local_devices=parallel.num_local_devices,
      seed=config.seed,
      train=True,
      arrays=train_arrays,
    )
    state, train_key, initial_step, restored_metrics = _start_or_resume(
      config,
      workdir,
      family,
      parallel,
      checkpointer,
      keys,
      abstract_state,
      train_iter,
      allow_config_change,
    )
    if initial_step == num_steps:
      console.event(
        f"The run in {os.path.abspath(workdir)} is already at step {num_steps} "
        "(train.num_steps): nothing to train; pass a larger "
        "--config.train.num_steps to train further."
      )
      finished = True
      return {
        "train": restored_metrics,
        "eval": {},
        "state": parallel.get_state(state),
        "step": num_steps,
      }
    train_key = jax.device_put(train_key, parallel.replicated_sharding)
    train_step = parallel.compile_train_step(family.train_step)
    eval_step = parallel.compile_eval_step(family.eval_step)
    test_arrays = data.load_split_arrays(  # Read once; every evaluation uses it.
      config.dataset.name, spec.test_split, data_dir
    )
    grid_inputs = data.to_float_samples(  # Reconstructed per grid.
      test_arrays[0][: max(train_cfg.num_samples // 2, 1)]
    )

    writer = None
    if is_chief:
      writer = MetricWriter(workdir, purge_step=initial_step + 1)
      closers.append(writer.close)
    pending: List[Dict[str, jax.Array]] = []  # Per-step metrics (all copies), on the device.
    fetched: List[Dict[str, np.ndarray]] = []  # Checked on the host, not yet logged.
    results: Dict[str, Any] = {"train": {}, "eval": {}}
    progress = tqdm.tqdm(
      total=num_steps,
      initial=initial_step,
      disable=not is_chief,
      desc=f"{config.model.family} on {config.dataset.name}",
      unit="step",
      dynamic_ncols=True,
    )
    closers.insert(0, progress.close)
    timer = {"time": time.perf_counter(), "step": initial_step}

    def periodic_work(step: int, interrupted_by) -> None:
      """Checks, logs, saves, evaluates, draws: the one place the loop syncs with the devices."""
      nonlocal pending, fetched
      log_due = _is_due(step, train_cfg.log_every, num_steps)
      save_due = _is_due(step, config.checkpoint.save_every, num_steps) or interrupted_by
      eval_due = _is_due(step, train_cfg.eval_every, num_steps)
      if pending and (log_due or save_due or eval_due):
        new = [parallel.first_copy(m) for m in jax.device_get(pending)]
        _check_finite(new, step - len(new) + 1)  # Before anything is saved.
        fetched, pending = fetched + new, []
      if fetched and log_due:
        means = {name: float(np.mean([m[name] for m in fetched])) for name in fetched[0]}
        now = time.perf_counter()
        means["samples_per_second"] = (
          (step - timer["step"]) * train_cfg.batch_size / max(now - timer["time"], 1e-9)
        )
        timer.update(time=now, step=step)
        fetched = []
        results["train"] = means
        if is_chief:
          writer.write_scalars(step, "train", means)
          progress.set_postfix(
            {k: f"{v:.4g}" for k, v in means.items() if k != "samples_per_second"}
          )
      sample_due = is_chief and _is_due(step, train_cfg.sample_every, num_steps)
      if save_due or eval_due:
        one_copy = parallel.to_replicated(state)  # Saved collectively by every process.
      if save_due:
        checkpointer.save(step, one_copy, train_key, train_iter, config, metrics=results["train"])
      if eval_due:
        results["eval"] = evaluate(
          family,
          parallel,
          eval_step,
          state,
          config,
          jax.random.fold_in(keys["eval"], step),
          test_arrays,
        )
        if is_chief:
          writer.write_scalars(step, "eval", results["eval"])
        checkpointer.save_best(step, one_copy, train_key, config, results["eval"])
      if sample_due:
        for path in writers.write_image_grids(
          family,
          parallel.local_copy(state),
          grid_inputs,
          keys["sample"],
          os.path.join(workdir, "images"),
          step,
          train_cfg.num_samples,
          spec,
        ):
          writer.write_image(step, os.path.basename(path).split("_")[0], path)
      if interrupted_by:
        checkpointer.wait()
        raise TrainingInterrupted(interrupted_by, step, checkpointer.directory)

    with termination_signals() as signals:
      # A Ctrl-C recorded while the run started up. Several processes stop together instead,
      # at a step they agree on (_AgreedStop): one leaving alone would stall the others.
      if signals.signal_name and not distributed.is_multiprocess():
        raise TrainingNotStarted(signals.signal_name)
      stop_requested = (
        _AgreedStop(parallel, signals)
        if distributed.is_multiprocess()
        else lambda step: signals.signal_name
      )
      for step in range(initial_step + 1, num_steps + 1):
        batch = parallel.put_batch(next(train_iter))
        state, metrics = train_step(state, batch, train_key)
        pending.append(metrics)
        if len(pending) > _MAX_STEPS_IN_FLIGHT:  # See _MAX_STEPS_IN_FLIGHT.
          jax.block_until_ready(pending[-1 - _MAX_STEPS_IN_FLIGHT])
        progress.update(1)
        periodic_work(step, stop_requested(step))
    finished = True
  finally:
    # After an error, the first error is the one to report; after a finished run, a failed
    # background save (reported when closing) is an error of its own.
    _close_all(closers, quietly=not finished)
  if is_chief:
    console.print_summary(
      _summary(config, results, initial_step, num_steps, time.perf_counter() - started, workdir)
    )
  results["state"] = parallel.get_state(state)
  results["step"] = num_steps
  return results
