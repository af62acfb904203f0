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
noticed by orbax until it is read: `restore_latest` tries steps newest first and warns, in
one line naming the file and the reason, about each one it skips. Array files are read once
here, synchronously, before orbax reads them (`_verify_arrays`): orbax's concurrent reads
stop at the first failure and leave the others reporting into a closed event loop (those
reports are dropped, `_late_read_filter`, for the damage only orbax's read finds). Evaluation
(`load_for_inference`) reads the newest readable step, from its copy in `checkpoints_best/`
when the one in `checkpoints/` is damaged, and says so in one line.
"""
import dataclasses
import datetime
import errno
import json
import os
import re
import shutil
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import flax
import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
import tensorstore

from aigc_jax import console, distributed
from aigc_jax.errors import UserError

LATEST_DIR = "checkpoints"
BEST_DIR = "checkpoints_best"
DISCARDED_DIR = "discarded"
_METADATA_BYTES = 256 * 1024  # Beside the arrays: metadata, config, metrics, data state.
# Everything a run writes in its workdir (besides the lock and discarded/): what `--fresh`
# and a restart from step 0 set aside.
RUN_OUTPUTS = (LATEST_DIR, BEST_DIR, "config.json", "resumes.jsonl", "metrics.jsonl",
               "tensorboard", "images", "eval")


class CheckpointError(UserError):
  """Checkpoints cannot be written, or none of them can be read."""


class CheckpointMismatchError(CheckpointError):
  """A checkpoint's tree or shapes differ from what the config builds."""


@dataclasses.dataclass(frozen=True)
class Restored:
  """What `restore_latest` gives back: the state tree (in the target's layout), its step, the
  config it was saved with (nested JSON dict) and the metrics saved beside it."""
  train_state: Dict[str, Any]
  rng: jax.Array
  step: int
  config: Dict[str, Any]
  metrics: Dict[str, float]


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
      console.event(f"Removing {directory}/{name}, a save that never finished.")
      shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


class _DataHandler(grain.checkpoint.CheckpointHandler):
  """grain's handler, which writes one file per process (`process_<i>-of-<n>.json`), reading
  a checkpoint saved by another number of processes too.

  The input pipeline's state is the number of global batches read (`{"next_index": k}`),
  the same on every process (process p reads the p-th slice of each global batch), so any
  process may start from process 0's file.
  """

  def restore(self, directory, item=None, args=None):
    index, count = jax.process_index(), jax.process_count()
    if (directory / f"process_{index}-of-{count}.json").exists():
      return super().restore(directory, item=item, args=args)
    item = item or args.item
    saved = sorted(directory.glob("process_0-of-*.json"))
    if not saved:
      raise ValueError(f"No data iterator state in {directory}.")
    state = saved[0].read_text()
    item.set_state(json.loads(state) if isinstance(item, grain.DatasetIterator)
                   else state.encode())
    item.start_prefetch()
    return item


@ocp.args.register_with_handler(_DataHandler, for_save=True)
class _DataSave(grain.checkpoint.CheckpointSave):
  """Saves the data iterator's state through `_DataHandler`."""


@ocp.args.register_with_handler(_DataHandler, for_restore=True)
class _DataRestore(grain.checkpoint.CheckpointRestore):
  """Restores the data iterator's state through `_DataHandler`."""


def _item_handlers() -> Dict[str, Any]:
  """Handlers of the named items, so a new process can read metadata before any save."""
  return {"state": ocp.PyTreeCheckpointHandler(), "data": _DataHandler(),
          "config": ocp.JsonCheckpointHandler(), "metrics": ocp.JsonCheckpointHandler()}


def _open_manager(directory: str, options) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(directory, options=options, item_handlers=_item_handlers())


def _config_json(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  return json.loads(config.to_json_best_effort())


def _os_reason(error: BaseException) -> Optional[str]:
  """The operating system's reason behind an error ("No space left on device"), or None.

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
  return None


# tensorstore status codes of a damaged file, as the OS or a reader would say it.
_STATUS_REASONS = {"NOT_FOUND": os.strerror(errno.ENOENT),
                   "PERMISSION_DENIED": os.strerror(errno.EACCES),
                   "DATA_LOSS": "corrupted data"}


def _damage(error: BaseException) -> str:
  """`<file>: <reason>` for a checkpoint read that failed, in one short line."""
  if isinstance(error, OSError) and error.filename:
    return f"{error.filename}: {error.strerror or error}"
  text = " ".join(str(error).split())
  path = re.search(r'local file "([^"]+)"', text)
  status = re.match(r"([A-Z_]+): ", text)
  size = re.search(r"not valid for value of size (\d+)", text)
  if size:
    reason = f"truncated to {size.group(1)} bytes"
  else:
    reason = (_os_reason(error) or (status and _STATUS_REASONS.get(status.group(1)))
              or f"{type(error).__name__}: {text.split(' [tensorstore_spec')[0][:160]}")
  return f"{path.group(1)}: {reason}" if path else reason


def _late_read_filter(previous_hook: Callable[[Any], None]) -> Callable[[Any], None]:
  """An unraisable-exception hook that drops "Event loop is closed" and passes on the rest.

  A failed orbax read closes its event loop while tensorstore's other reads are still in
  flight; each of those later reports into the closed loop, and Python prints a traceback for
  every one (about 27 for one damaged step). They carry nothing: the failure itself was
  raised and handled. `_verify_arrays` keeps damaged steps from orbax; this catches the
  damage that only orbax's read finds.
  """
  def hook(unraisable) -> None:
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      return
    previous_hook(unraisable)
  hook.drops_late_reads = True
  return hook


if not getattr(sys.unraisablehook, "drops_late_reads", False):
  sys.unraisablehook = _late_read_filter(sys.unraisablehook)


def _uses_ocdbt(metadata_path: str) -> bool:
  """Whether a `state` item's `_METADATA` says its arrays were written to an OCDBT store.

  An unreadable `_METADATA` counts as OCDBT (orbax's default), so its damage is reported too.
  """
  try:
    with open(metadata_path, encoding="utf-8") as f:
      return bool(json.load(f).get("use_ocdbt", True))
  except (OSError, ValueError, AttributeError):
    return True


def _verify_arrays(step_dir: str) -> None:
  """Reads every stored value of a step's `state` item once, here, or raises the read's error.

  Orbax reads the arrays concurrently on an event loop it closes at the first failure; the
  reads still in flight then report into the closed loop ("Event loop is closed" tracebacks).
  Reading the OCDBT store synchronously first finds a removed or truncated file before orbax
  does and names it. Costs one extra read of the checkpoint, at resume only.
  """
  item = os.path.join(step_dir, "state")
  metadata = os.path.join(item, "_METADATA")
  if not os.path.exists(metadata):
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), metadata)
  manifest = os.path.join(item, "manifest.ocdbt")
  if not os.path.exists(manifest):
    if _uses_ocdbt(metadata):  # Without its manifest an OCDBT store reads as empty.
      raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), manifest)
    return  # Not an OCDBT store: orbax reads it file by file and names the file itself.
  store = tensorstore.KvStore.open(
      {"driver": "ocdbt", "base": {"driver": "file", "path": item + "/"}}).result()
  for key in store.list().result():
    store.read(key).result()


def _write_error(error: BaseException, step: int, directory: str) -> Exception:
  """The error to raise for a failed checkpoint write: a one-line CheckpointError when the
  operating system refused (disk full, read-only), else the original error (a bug)."""
  reason = _os_reason(error)
  if reason is None:
    return error
  return CheckpointError(
      f"Could not write the checkpoint of step {step} to {directory} ({reason}); free disk "
      "space or make the workdir writable. Earlier checkpoints are untouched.")


class _IteratorState:
  """A data iterator's state taken when `save` is called, in the form grain's handler writes.

  Taking it first keeps the saved position that of the saved step, and a failure to get it
  happens here, before orbax has started writing the other items.
  """

  def __init__(self, iterator: Any):
    state = iterator.get_state()
    self._state = state if isinstance(state, bytes) else json.dumps(state, indent=4).encode()

  def get_state(self) -> bytes:
    return self._state


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
    distributed.barrier("incomplete saves removed")  # Process 0 removed them.
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
          f"Cannot create the checkpoint directory {directory} ({_os_reason(e) or e}); make the "
          "workdir writable or choose another --workdir.") from e

  def steps(self) -> List[int]:
    """Steps of the complete checkpoints on disk, newest first (damaged ones included)."""
    self._latest.reload()
    return sorted(self._latest.all_steps(), reverse=True)

  @staticmethod
  def _write(manager, step: int, args, tree, metrics=None) -> None:
    """Saves `args` at `step`; `tree` is the state item, whose size is checked against the
    free space first: orbax's writes stop at the first ENOSPC and leave the others reporting
    into a closed event loop, so a save that cannot fit is refused before it starts."""
    needed = sum(getattr(leaf, "nbytes", 8) for leaf in jax.tree.leaves(tree)) + _METADATA_BYTES
    try:
      stats = os.statvfs(manager.directory)
      free = stats.f_bavail * stats.f_frsize
      if free < needed:
        raise CheckpointError(
            f"Could not write the checkpoint of step {step} to {manager.directory} "
            f"({os.strerror(errno.ENOSPC)}: about {needed / 2**20:.1f} MiB needed, "
            f"{free / 2**20:.1f} MiB free); free disk space or make the workdir writable. "
            "Earlier checkpoints are untouched.")
      manager.save(step, args=args, metrics=metrics, force=True)
    except CheckpointError:
      raise
    except Exception as e:  # Disk full or read-only: one line; anything else is a bug.
      error = _write_error(e, step, manager.directory)
      if error is e:
        raise
      raise error from e

  def save(self, step: int, state: Any, rng: jax.Array, data_iterator: Any,
           config: ml_collections.ConfigDict, metrics: Optional[Dict[str, float]] = None):
    """Starts saving everything a resume needs at `step`; returns once the arrays are copied.

    `state` is one copy of the train state (any device layout with one logical copy).
    """
    try:
      data_state = _IteratorState(data_iterator)
    except OSError as e:
      raise _write_error(e, step, self.directory) from e
    tree = state_tree(state, rng)
    args = ocp.args.Composite(
        state=ocp.args.PyTreeSave(tree),
        data=_DataSave(data_state),
        config=ocp.args.JsonSave(_config_json(config)),
        metrics=ocp.args.JsonSave(dict(metrics or {})))
    self._write(self._latest, step, args, tree)

  def save_best(self, step: int, state: Any, rng: jax.Array,
                config: ml_collections.ConfigDict, metrics: Dict[str, float]) -> None:
    """Offers `step` to the best-by-`best_metric` checkpoints (kept only if among the best)."""
    if self._best is None:
      return
    tree = state_tree(state, rng)
    args = ocp.args.Composite(
        state=ocp.args.PyTreeSave(tree),
        config=ocp.args.JsonSave(_config_json(config)),
        metrics=ocp.args.JsonSave(dict(metrics)))
    self._write(self._best, step, args, tree, metrics=dict(metrics))

  def wait(self) -> None:
    """Blocks until all started saves are on disk; a failed background write raises here."""
    for manager in filter(None, (self._latest, self._best)):
      try:
        manager.wait_until_finished()
      except Exception as e:  # A background write failed: one line if the OS refused it.
        reason = _os_reason(e)
        if reason is None:
          raise
        raise CheckpointError(
            f"A checkpoint write to {manager.directory} failed ({reason}); free disk space or "
            "make the workdir writable. Earlier checkpoints are untouched.") from e

  def restore_latest(self, abstract_tree: Dict[str, Any], data_iterator: Any,
                     check_config: Optional[Callable[[Dict[str, Any], int], None]] = None
                     ) -> Optional[Restored]:
    """Restores the newest readable checkpoint into `abstract_tree`'s shardings.

    Args:
      abstract_tree: `abstract_state_tree(...)` of the state this run builds.
      data_iterator: a fresh grain iterator; its state is set to the checkpoint's.
      check_config: `(saved config as a JSON dict, step) -> None`, called with the config
        of the checkpoint about to be restored, before its arrays are read; may raise.

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
        _verify_arrays(where)
        saved_shapes = _saved_shapes(self._latest.item_metadata(step)["state"])
        items = self._latest.restore(step, args=ocp.args.Composite(
            config=ocp.args.JsonRestore(), metrics=ocp.args.JsonRestore()))
      except Exception as e:  # Damaged step: a file missing, truncated or unreadable.
        failures.append(step)
        self._set_aside_damaged(step, e)
        continue
      if check_config is not None:
        check_config(items["config"], step)
      _check_matches(saved_shapes, abstract_tree, where)
      try:
        restored = self._latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item=abstract_tree,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_tree)),
            data=_DataRestore(data_iterator)))
      except Exception as e:  # Damage the scan cannot see (corrupted bytes).
        failures.append(step)
        self._set_aside_damaged(step, e)
        continue
      state = restored["state"]
      return Restored(train_state=state["train_state"], rng=state["rng"], step=step,
                      config=items["config"], metrics=dict(items["metrics"] or {}))
    if failures:
      raise CheckpointError(
          f"None of the checkpoints in {self.directory} (steps {', '.join(map(str, steps))}) "
          "can be read (each was moved to discarded/); rerun with --fresh to start over.")
    return None

  def _set_aside_damaged(self, step: int, error: BaseException) -> None:
    """Moves a damaged step out of the way of new saves, into `workdir/discarded/`; one line.

    Every process calls it (each found the same damage): process 0 moves, all reload."""
    if jax.process_index() == 0:
      target = os.path.join(os.path.dirname(self.directory), DISCARDED_DIR,
                            f"damaged-step-{step}-{_timestamp()}")
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)), target)
      console.warning(f"Checkpoint {self.directory}/{step} is damaged ({_damage(error)}); "
                      f"moved it to {target} and trying the previous one.")
    distributed.barrier(f"damaged step {step} set aside")
    self._latest.reload()

  def set_aside_best_after(self, step: int) -> List[int]:
    """Moves best checkpoints of steps after `step` into `workdir/discarded/`.

    A run resumed from `step` recomputes those steps; their old best saves belong to the
    lost part of the run (and would clash with the new saves of the same steps). Every
    process calls it: process 0 moves them (and returns their steps), all reload.
    """
    later = []
    if jax.process_index() == 0 and os.path.isdir(self.best_directory):
      later = self._move_best_after(step)
    distributed.barrier(f"best after {step} set aside")
    if self._best is not None:
      self._best.reload()
    return later

  def _move_best_after(self, step: int) -> List[int]:
    later = sorted(int(n) for n in os.listdir(self.best_directory)
                   if n.isdigit() and int(n) > step)
    if later:
      target = os.path.join(os.path.dirname(self.directory), DISCARDED_DIR,
                            f"best-after-step-{step}-{_timestamp()}")
      os.makedirs(target)
      for best_step in later:
        shutil.move(os.path.join(self.best_directory, str(best_step)),
                    os.path.join(target, str(best_step)))
      console.event(f"Moved the best checkpoints of steps {', '.join(map(str, later))}, after "
                    f"the resumed step, to {target}.")
    return later

  def close(self) -> None:
    """Waits for pending saves, then releases orbax's threads."""
    try:
      self.wait()
    finally:
      for manager in filter(None, (self._latest, self._best)):
        manager.close()


def _timestamp() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def has_checkpoints(workdir: str) -> bool:
  """Whether `workdir/checkpoints/` holds any finished step (damaged ones included)."""
  return newest_step(workdir) is not None


def newest_step(workdir: str) -> Optional[int]:
  """The newest step in `workdir/checkpoints/` (not checked for damage), or None."""
  directory = os.path.join(workdir, LATEST_DIR)
  steps = [int(n) for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []
  return max(steps, default=None)


def set_aside_previous_run(workdir: str) -> Optional[str]:
  """Moves an earlier run's outputs (`RUN_OUTPUTS`) into `workdir/discarded/<UTC time>/`.

  Used by `--fresh` and by a run that starts from step 0 in a workdir with an earlier run's
  logs: nothing already written is deleted, and no two runs share a log. Other files in the
  workdir are left where they are. Returns the new folder, or None if there was nothing.
  """
  names = [n for n in RUN_OUTPUTS if os.path.exists(os.path.join(workdir, n))]
  if not names:
    return None
  target = os.path.join(workdir, DISCARDED_DIR, _timestamp())
  os.makedirs(target)
  for name in names:
    shutil.move(os.path.join(workdir, name), os.path.join(target, name))
  return target


def _load_for_inference_step(manager, directory: str, step: int, get_family: Callable):
  """(config, family, state) of one step of a run, reading parameters and BatchNorm stats."""
  from aigc_jax import data  # pylint: disable=import-outside-toplevel
  _verify_arrays(os.path.join(directory, str(step)))
  config = ml_collections.ConfigDict(manager.restore(
      step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"])
  family = get_family(config, data.get_dataset_spec(config.dataset.name).sample_shape)
  template = jax.jit(family.init)(jax.random.PRNGKey(0))  # One compile, not one per op.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  wanted = {"train_state": _without_optimizer(
      abstract_state_tree(jax.eval_shape(lambda: template), jax.random.PRNGKey(0),
                          device)["train_state"])}
  saved = _saved_shapes(manager.item_metadata(step)["state"])
  _check_matches({k: v for k, v in saved.items()
                  if k.startswith("train_state.") and ".opt_state." not in k},
                 wanted, f"{directory}/{step}")
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(
          item=wanted, restore_args=ocp.checkpoint_utils.construct_restore_args(wanted),
          partial_restore=True)))["state"]["train_state"]
  merged = _merge(flax.serialization.to_state_dict(template), restored)
  return config, family, flax.serialization.from_state_dict(template, merged)


def _inference_manager(directory: str) -> ocp.CheckpointManager:
  """A manager that only reads `directory`, as this process alone."""
  # Not `read_only=True`: orbax then warns "Given directory is read only" about any directory.
  # Without `create`, `max_to_keep` or a save, this manager writes nothing.
  # This process alone reads (in a multi-process run, process 0 evaluates while the others
  # wait): orbax would otherwise wait at barriers for every process.
  return _open_manager(directory, ocp.CheckpointManagerOptions(
      create=False, enable_async_checkpointing=False,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          primary_host=jax.process_index(), active_processes={jax.process_index()})))


def inference_candidates(steps_by_directory: Dict[str, List[int]], step: Optional[int]
                         ) -> List[Tuple[int, str]]:
  """The (step, directory) pairs to try, in order: newest step first, and for one step the
  directories in the order given (`checkpoints/` before its copy in `checkpoints_best/`).

  `step` keeps only that step's copies.
  """
  order = {directory: index for index, directory in enumerate(steps_by_directory)}
  pairs = [(s, d) for d, steps in steps_by_directory.items() for s in steps
           if step is None or s == step]
  return sorted(pairs, key=lambda pair: (-pair[0], order[pair[1]]))


def load_for_inference(workdir: str, step: Optional[int] = None, *, best: bool = False,
                       get_family: Optional[Callable] = None) -> Tuple[Any, Any, Any, int]:
  """Loads what sampling and evaluation need from a run: config, parameters, BatchNorm stats.

  Optimiser states are not read. Arrays land on this process's first device; in a
  multi-process run this process reads alone (no barriers with the others). Nothing in the workdir
  is changed, and the run may be training meanwhile: a step that training rotates away
  (it keeps the newest `checkpoint.keep_last`) while it is read is not damaged; the steps
  are listed again and the newest one read instead.

  Which checkpoint: the newest readable step of `checkpoints/` and `checkpoints_best/`
  together, the copy in `checkpoints/` first; so a damaged newest step is read from its intact
  copy in `checkpoints_best/` if there is one, and only then an older step. A step other than
  the newest of `checkpoints/` is announced in one line saying why.

  Args:
    workdir: a training run's workdir.
    step: the step to load; None: the newest readable one.
    best: read only `checkpoints_best/` (the best-by-metric saves).
    get_family: the family factory (defaults to `aigc_jax.training.family.get_family`).

  Returns:
    (config, family, state, step): the run's ConfigDict, its `Family`, a single-device
    state whose params and batch_stats are the checkpoint's, and the step loaded.
  """
  if get_family is None:
    from aigc_jax.training.family import get_family  # Lazy: training imports this module.
  names = (BEST_DIR,) if best else (LATEST_DIR, BEST_DIR)
  directories = [os.path.abspath(os.path.join(workdir, n)) for n in names]
  directories = [d for d in directories if os.path.isdir(d)]
  if not directories:
    raise CheckpointError(
        f"There are no checkpoints in {os.path.abspath(os.path.join(workdir, names[0]))}; "
        f"train first with python -m experiments.train --workdir {workdir}.")
  managers = {d: _inference_manager(d) for d in directories}
  try:
    damaged, reasons = [], []  # (step, directory) and `_damage` of each unreadable one.
    for _ in range(10):  # Each pass re-lists after a step vanished under us.
      steps_by_directory = {}
      for directory, manager in managers.items():
        manager.reload()
        steps_by_directory[directory] = sorted(manager.all_steps(), reverse=True)
      candidates = inference_candidates(steps_by_directory, step)
      if step is not None and not candidates:
        available = sorted({s for steps in steps_by_directory.values() for s in steps},
                           reverse=True)
        raise CheckpointError(
            f"There is no checkpoint of step {step} in {' or '.join(directories)}; "
            f"available: {', '.join(map(str, available)) or 'none'} (training keeps only "
            "the newest checkpoint.keep_last).")
      rotated = False
      for candidate, directory in (c for c in candidates if c not in damaged):
        try:
          loaded = _load_for_inference_step(managers[directory], directory, candidate,
                                            get_family)
        except UserError:  # A mismatch, or a config naming what cannot be built: no damage.
          raise
        except Exception as e:  # pylint: disable=broad-except
          if not os.path.isdir(os.path.join(directory, str(candidate))):
            rotated = True  # Removed by the training run's rotation while we read it.
            break
          damaged.append((candidate, directory))
          reasons.append(_damage(e))
          continue
        if damaged:
          console.warning(_fallback_message(candidate, directory, damaged, reasons))
        return (*loaded, candidate)
      if not rotated:
        break
  finally:
    for manager in managers.values():
      manager.close()
  for (damaged_step, directory), reason in zip(damaged, reasons):
    console.warning(f"Checkpoint {directory}/{damaged_step} is damaged ({reason}).")
  raise CheckpointError(f"No readable checkpoint in {' or '.join(directories)}; train again "
                        f"with python -m experiments.train --workdir {workdir}.")


def _fallback_message(step: int, directory: str, damaged: List[Tuple[int, str]],
                      reasons: List[str]) -> str:
  """One line: which checkpoints are damaged (file and reason), and which one is read instead."""
  what = "; ".join(f"{d}/{s} ({reason})" for (s, d), reason in zip(damaged, reasons))
  why = ("an intact copy of the same step" if any(s == step for s, _ in damaged)
         else "the newest readable one")
  return (f"Checkpoint{'s' if len(damaged) > 1 else ''} {what} "
          f"{'are' if len(damaged) > 1 else 'is'} damaged; reading {directory}/{step} "
          f"instead, {why}.")


def _merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
  """`base` with the leaves of the (partial) `update` tree put in."""
  merged = dict(base)
  for key, value in update.items():
    merged[key] = _merge(base[key], value) if isinstance(value, dict) else value
  return merged
