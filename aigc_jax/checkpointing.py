"""Checkpoints on orbax-checkpoint: the only module that talks to orbax.

Layout of a workdir:
  checkpoints/<step>/       the last `keep_last` saves (resume reads the newest good one)
  checkpoints_best/<step>/  the best `keep_best` by an evaluation metric (separate manager:
                            orbax's best_fn together with max_to_keep can delete the newest)

Each step holds the named items
  state   {"train_state": flax state dict (params, optimizer states, BatchNorm statistics,
          step), "rng": the run's training key}
  data    the grain iterator's state (resume reads exactly the batches that came next)
  config  the run's config, JSON
  metrics the latest training/evaluation metrics, JSON

Orbax writes a step into a temporary directory and renames it when complete, and deletes old
steps only after a new one has finished, so a save that fails half way leaves the previous
checkpoints as they were. A damaged step (file removed, truncated, bit-flipped) is not
noticed by orbax until it is read: `restore_latest` tries steps newest first and warns about
each one it skips.
"""
import dataclasses
import datetime
import json
import os
import re
import shutil
from typing import Any, Callable, Dict, List, Optional, Tuple

import flax
import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from aigc_jax.errors import UserError

LATEST_DIR = "checkpoints"
BEST_DIR = "checkpoints_best"


class CheckpointError(UserError):
  """Checkpoints cannot be written, or none of them can be read."""


class CheckpointMismatchError(CheckpointError):
  """A checkpoint's tree or shapes differ from what the config builds."""


@dataclasses.dataclass(frozen=True)
class Restored:
  """What `restore_latest` gives back: the state tree (in the target's layout) and its step."""
  train_state: Dict[str, Any]
  rng: jax.Array
  step: int


def state_tree(state: Any, rng: jax.Array) -> Dict[str, Any]:
  """The `state` item: the train state as a flax state dict, and the training key."""
  return {"train_state": flax.serialization.to_state_dict(state), "rng": rng}


def abstract_state_tree(state: Any, rng: jax.Array, sharding: jax.sharding.Sharding):
  """`state_tree` of shapes and dtypes (works on `jax.eval_shape` output), placed on `sharding`."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      state_tree(state, rng))


def _without_optimizer(tree):
  """The state dict less every `opt_state`: what sampling and evaluation need."""
  if isinstance(tree, dict):
    return {k: _without_optimizer(v) for k, v in tree.items() if k != "opt_state"}
  return tree


def _leaf_shapes(tree) -> Dict[str, tuple]:
  """{"train_state.params.encoder.Dense_0.kernel": shape, ...} of a tree of arrays or structs."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): tuple(leaf.shape)
          for path, leaf in flat}


def _saved_shapes(metadata) -> Dict[str, tuple]:
  """{"train_state.params...": shape} from orbax's metadata of a saved `state` item."""
  if metadata is None:
    raise FileNotFoundError("the state item has no readable metadata")
  leaves = jax.tree.leaves(metadata.tree if hasattr(metadata, "tree") else metadata)
  return {leaf.name: tuple(leaf.shape) for leaf in leaves}


def _check_matches(saved: Dict[str, tuple], target, where: str) -> None:
  """Raises CheckpointMismatchError naming the keys whose presence or shape differ."""
  wanted = _leaf_shapes(target)
  params_first = lambda key: (".opt_state." in key, key)  # Model keys say most.
  missing = sorted(set(wanted) - set(saved), key=params_first)
  unexpected = sorted(set(saved) - set(wanted), key=params_first)
  reshaped = [f"{k} {saved[k]} vs {wanted[k]}" for k in
              sorted(set(saved) & set(wanted), key=params_first) if saved[k] != wanted[k]]
  if missing or unexpected or reshaped:
    parts = []
    for label, keys in (("missing from the checkpoint", missing),
                        ("not in this config's model", unexpected),
                        ("of other shapes (checkpoint vs config)", reshaped)):
      if keys:
        shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
        parts.append(f"{label}: {shown}")
    raise CheckpointMismatchError(
        f"The checkpoint {where} does not fit the model this config builds ({'; '.join(parts)}); "
        "train with the config the checkpoint was saved with, or use a new --workdir.")


def _remove_incomplete_saves(directory: str) -> None:
  """Deletes the temporary folders of saves that never finished (a crash mid-save).

  Orbax writes `<step>.orbax-checkpoint-tmp*` and renames it only once complete, so these
  never hold a usable checkpoint.
  """
  if jax.process_index() != 0 or not os.path.isdir(directory):
    return
  for name in os.listdir(directory):
    if ".orbax-checkpoint-tmp" in name:
      logging.warning("Removing %s/%s, a save that never finished.", directory, name)
      shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _item_handlers() -> Dict[str, Any]:
  """Handlers of the named items, so a new process can read metadata before any save."""
  return {"state": ocp.PyTreeCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler(),
          "config": ocp.JsonCheckpointHandler(), "metrics": ocp.JsonCheckpointHandler()}


def _open_manager(directory: str, options) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(directory, options=options, item_handlers=_item_handlers())


def _config_json(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  return json.loads(config.to_json_best_effort())


def _reason(error: BaseException) -> str:
  """A short cause for an error message: the OS error if there is one, else its first line.

  Orbax and tensorstore wrap disk errors in long messages ending with `os_error_code='N'`.
  """
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.strerror:
      return seen.strerror
    code = re.search(r"os_error_code='(\d+)'", str(seen))
    if code:
      return os.strerror(int(code.group(1)))
    seen = seen.__cause__ or seen.__context__
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:200]}"


class Checkpointer:
  """Saves and restores one run's checkpoints under `workdir` (see the module docstring).

  Args:
    workdir: the run's directory.
    keep_last: how many of the newest checkpoints to keep.
    keep_best: how many best-by-metric checkpoints to keep (0: none).
    best_metric: the evaluation metric that ranks them; best_mode: "min" or "max".
    async_save: save in a background thread (the step only waits for the device-to-host
      copy); `wait()` blocks until every started save has finished.
  """

  def __init__(self, workdir: str, *, keep_last: int = 3, keep_best: int = 0,
               best_metric: str = "loss", best_mode: str = "min", async_save: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, LATEST_DIR))
    self.best_directory = os.path.abspath(os.path.join(workdir, BEST_DIR))
    self.best_metric = best_metric
    for directory in (self.directory, self.best_directory):
      _remove_incomplete_saves(directory)
    self._latest = self._manager(self.directory, ocp.CheckpointManagerOptions(
        max_to_keep=keep_last, enable_async_checkpointing=async_save, create=True,
        cleanup_tmp_directories=True))
    self._best = None
    if keep_best > 0:
      self._best = self._manager(self.best_directory, ocp.CheckpointManagerOptions(
          max_to_keep=keep_best, best_fn=lambda metrics: metrics[best_metric],
          best_mode=best_mode, keep_checkpoints_without_metrics=False,
          enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=True))

  @staticmethod
  def _manager(directory: str, options) -> ocp.CheckpointManager:
    try:
      return _open_manager(directory, options)
    except OSError as e:
      raise CheckpointError(
          f"Cannot create the checkpoint directory {directory} ({_reason(e)}); make the workdir "
          "writable or choose another --workdir.") from e

  def steps(self) -> List[int]:
    """Steps of the complete checkpoints on disk, newest first (damaged ones included)."""
    self._latest.reload()
    return sorted(self._latest.all_steps(), reverse=True)

  def _write(self, manager, step: int, args, metrics=None) -> None:
    try:
      manager.save(step, args=args, metrics=metrics, force=True)
    except Exception as e:  # Any failure of the write itself: disk full, read-only, ...
      raise CheckpointError(
          f"Could not write the checkpoint of step {step} to {manager.directory} ({_reason(e)}); free "
          "disk space or make the workdir writable. Earlier checkpoints are untouched.") from e

  def save(self, step: int, state: Any, rng: jax.Array, data_iterator: Any,
           config: ml_collections.ConfigDict, metrics: Optional[Dict[str, float]] = None):
    """Starts saving everything a resume needs at `step`; returns once the arrays are copied.

    `state` is one copy of the train state (any device layout with one logical copy).
    """
    args = ocp.args.Composite(
        state=ocp.args.PyTreeSave(state_tree(state, rng)),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        config=ocp.args.JsonSave(_config_json(config)),
        metrics=ocp.args.JsonSave(dict(metrics or {})))
    self._write(self._latest, step, args)

  def save_best(self, step: int, state: Any, rng: jax.Array,
                config: ml_collections.ConfigDict, metrics: Dict[str, float]) -> None:
    """Offers `step` to the best-by-`best_metric` checkpoints (kept only if among the best)."""
    if self._best is None:
      return
    args = ocp.args.Composite(
        state=ocp.args.PyTreeSave(state_tree(state, rng)),
        config=ocp.args.JsonSave(_config_json(config)),
        metrics=ocp.args.JsonSave(dict(metrics)))
    self._write(self._best, step, args, metrics=dict(metrics))

  def wait(self) -> None:
    """Blocks until all started saves are on disk; a failed background write raises here."""
    for manager in filter(None, (self._latest, self._best)):
      try:
        manager.wait_until_finished()
      except Exception as e:
        raise CheckpointError(
            f"A checkpoint write to {manager.directory} failed ({_reason(e)}); free disk space or make "
            "the workdir writable. Earlier checkpoints are untouched.") from e

  def restore_latest(self, abstract_tree: Dict[str, Any],
                     data_iterator: Any) -> Optional[Restored]:
    """Restores the newest readable checkpoint into `abstract_tree`'s shardings.

    Args:
      abstract_tree: `abstract_state_tree(...)` of the state this run builds.
      data_iterator: a fresh grain iterator; its state is set to the checkpoint's.

    Returns:
      None when there is no checkpoint; otherwise the restored state tree and step.
    Raises:
      CheckpointMismatchError if the newest readable checkpoint does not fit the config;
      CheckpointError if checkpoints exist but none can be read.
    """
    steps = self.steps()
    failures = []
    for step in steps:
      where = f"{self.directory}/{step}"
      try:
        saved = _saved_shapes(self._latest.item_metadata(step)["state"])
      except Exception as e:  # Damaged step: metadata missing or unreadable.
        failures.append(self._skip(where, e))
        self._set_aside_damaged(step)
        continue
      _check_matches(saved, abstract_tree, where)
      try:
        restored = self._latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item=abstract_tree,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_tree)),
            data=grain.checkpoint.CheckpointRestore(data_iterator)))
      except Exception as e:  # Damaged array data: truncated, removed or corrupted files.
        failures.append(self._skip(where, e))
        self._set_aside_damaged(step)
        continue
      state = restored["state"]
      return Restored(train_state=state["train_state"], rng=state["rng"], step=step)
    if failures:
      raise CheckpointError(
          f"None of the checkpoints in {self.directory} (steps {', '.join(map(str, steps))}) "
          "can be read (each was moved to discarded/); rerun with --fresh to start over.")
    return None

  def _set_aside_damaged(self, step: int) -> None:
    """Moves a damaged step out of the way of new saves, into `workdir/discarded/`."""
    if jax.process_index() != 0:
      return
    target = os.path.join(os.path.dirname(self.directory), "discarded",
                          f"damaged-step-{step}-{_timestamp()}")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.move(os.path.join(self.directory, str(step)), target)
    logging.warning("Moved the damaged checkpoint of step %d to %s.", step, target)
    self._latest.reload()

  @staticmethod
  def _skip(where: str, error: Exception) -> str:
    logging.warning("Checkpoint %s is damaged and was skipped (%s); trying an older one.",
                    where, _reason(error))
    return where

  def close(self) -> None:
    """Waits for pending saves, then releases orbax's threads."""
    try:
      self.wait()
    finally:
      for manager in filter(None, (self._latest, self._best)):
        manager.close()


def _timestamp() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def set_aside_previous_run(workdir: str) -> Optional[str]:
  """Moves an earlier run's checkpoints and logs into `workdir/discarded/<UTC time>/`.

  Used by `--fresh`: nothing already saved is deleted. Returns the new folder, or None.
  """
  names = [n for n in (LATEST_DIR, BEST_DIR, "metrics.jsonl", "tensorboard", "images")
           if os.path.exists(os.path.join(workdir, n))]
  if not names:
    return None
  target = os.path.join(workdir, "discarded", _timestamp())
  os.makedirs(target)
  for name in names:
    shutil.move(os.path.join(workdir, name), os.path.join(target, name))
  return target


def load_for_inference(workdir: str, step: Optional[int] = None, *, best: bool = False,
                       get_family: Optional[Callable] = None) -> Tuple[Any, Any, Any, int]:
  """Loads what sampling and evaluation need from a run: config, parameters, BatchNorm stats.

  Optimiser states are not read. Arrays land on the default device.

  Args:
    workdir: a training run's workdir.
    step: the step to load; None: the newest readable one.
    best: read `checkpoints_best/` (the best-by-metric saves) instead of `checkpoints/`.
    get_family: the family factory (defaults to `aigc_jax.training.family.get_family`).

  Returns:
    (config, family, state, step): the run's ConfigDict, its `Family`, a single-device
    state whose params and batch_stats are the checkpoint's, and the step loaded.
  """
  if get_family is None:
    from aigc_jax.training.family import get_family  # Lazy: training imports this module.
  from aigc_jax import data
  directory = os.path.abspath(os.path.join(workdir, BEST_DIR if best else LATEST_DIR))
  if not os.path.isdir(directory):
    raise CheckpointError(f"There are no checkpoints in {directory}; train first with "
                          f"python -m experiments.train --workdir {workdir}.")
  manager = _open_manager(directory, ocp.CheckpointManagerOptions(
      read_only=True, enable_async_checkpointing=False))
  steps = sorted(manager.all_steps(), reverse=True)
  if step is not None:
    if step not in steps:
      raise CheckpointError(f"There is no checkpoint of step {step} in {directory}; "
                            f"available: {', '.join(map(str, steps)) or 'none'}.")
    steps = [step]
  for candidate in steps:
    try:
      config = ml_collections.ConfigDict(manager.restore(
          candidate, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"])
      family = get_family(config, data.get_dataset_spec(config.dataset.name).image_shape)
      template = family.init(jax.random.PRNGKey(0))
      device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
      wanted = {"train_state": _without_optimizer(
          abstract_state_tree(jax.eval_shape(lambda: template), jax.random.PRNGKey(0),
                              device)["train_state"])}
      saved = _saved_shapes(manager.item_metadata(candidate)["state"])
      _check_matches({k: v for k, v in saved.items()
                      if k.startswith("train_state.") and ".opt_state." not in k},
                     wanted, f"{directory}/{candidate}")
      restored = manager.restore(candidate, args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(
              item=wanted, restore_args=ocp.checkpoint_utils.construct_restore_args(wanted),
              partial_restore=True)))["state"]["train_state"]
    except CheckpointMismatchError:
      raise
    except Exception as e:
      Checkpointer._skip(f"{directory}/{candidate}", e)
      continue
    merged = _merge(flax.serialization.to_state_dict(template), restored)
    manager.close()
    return config, family, flax.serialization.from_state_dict(template, merged), candidate
  manager.close()
  raise CheckpointError(f"No readable checkpoint in {directory}; train again with "
                        f"python -m experiments.train --workdir {workdir}.")


def _merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
  """`base` with the leaves of the (partial) `update` tree put in."""
  merged = dict(base)
  for key, value in update.items():
    merged[key] = _merge(base[key], value) if isinstance(value, dict) else value
  return merged
