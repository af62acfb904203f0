"""Checkpoints on orbax-checkpoint: the only module that talks to orbax.

Where in a workdir (the names are `aigc_jax.workdir`'s):
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
reports are dropped, `_late_read_filter`, for the damage only orbax's read finds).

`Checkpointer` writes and resumes a run; `CheckpointReader` reads one checkpoint folder for
sampling and evaluation, as one process, without the optimiser states (which of its steps to
read, and how to build the model it fits, is `aigc_jax.inference`'s).
"""

import dataclasses
import errno
import json
import os
import re
import shutil
import sys
from typing import Any, Callable, Dict, List, Optional

import flax
import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
import tensorstore

from aigc_jax import console, distributed
from aigc_jax.errors import UserError
from aigc_jax.workdir import BEST_DIR, LATEST_DIR, discarded_path

_METADATA_BYTES = 256 * 1024  # Beside the arrays: metadata, config, metrics, data state.


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
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state_tree(state, rng)
  )


def _without_optimizer(tree):
  """The state dict less every `opt_state`: what sampling and evaluation need."""
  if isinstance(tree, dict):
    return {k: _without_optimizer(v) for k, v in tree.items() if k != "opt_state"}
  return tree


def _leaf_shapes(tree) -> Dict[str, tuple]:
  """{"train_state.params.encoder.Dense_0.kernel": shape, ...} of a tree of arrays or structs."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
    ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): tuple(leaf.shape)
    for path, leaf in flat
  }


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
  reshaped = [
    f"{k} {saved[k]} vs {wanted[k]}"
    for k in sorted(set(saved) & set(wanted), key=params_first)
    if saved[k] != wanted[k]
  ]
  if missing or unexpected or reshaped:
    parts = []
    for label, keys in (
      ("missing from the checkpoint", missing),
      ("not in this config's model", unexpected),
      ("of other shapes (checkpoint vs config)", reshaped),
    ):
      if keys:
        shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
        parts.append(f"{label}: {shown}")
    raise CheckpointMismatchError(
      f"The checkpoint {where} does not fit the model this config builds ({'; '.join(parts)}); "
      "train with the config the checkpoint was saved with, or use a new --workdir."
    )


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
    item.set_state(json.loads(state) if isinstance(item, grain.DatasetIterator) else state.encode())
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
  return {
    "state": ocp.PyTreeCheckpointHandler(),
    "data": _DataHandler(),
    "config": ocp.JsonCheckpointHandler(),
    "metrics": ocp.JsonCheckpointHandler(),
  }


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
_STATUS_REASONS = {
  "NOT_FOUND": os.strerror(errno.ENOENT),
  "PERMISSION_DENIED": os.strerror(errno.EACCES),
  "DATA_LOSS": "corrupted data",
}


def describe_damage(error: BaseException) -> str:
  """`<file>: <reason>` for a checkpoint read that failed, in one short line
  ("<step>/state/manifest.ocdbt: No such file or directory", "...: truncated to 12 bytes")."""
  if isinstance(error, OSError) and error.filename:
    return f"{error.filename}: {error.strerror or error}"
  text = " ".join(str(error).split())
  path = re.search(r'local file "([^"]+)"', text)
  status = re.match(r"([A-Z_]+): ", text)
  size = re.search(r"not valid for value of size (\d+)", text)
  if size:
    reason = f"truncated to {size.group(1)} bytes"
  else:
    reason = (
      _os_reason(error)
      or (status and _STATUS_REASONS.get(status.group(1)))
      or f"{type(error).__name__}: {text.split(' [tensorstore_spec')[0][:160]}"
    )
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
    {"driver": "ocdbt", "base": {"driver": "file", "path": item + "/"}}
  ).result()
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
    "space or make the workdir writable. Earlier checkpoints are untouched."
  )


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

  def __init__(
    self,
    workdir: str,
    *,
    keep_last: int = 3,
    keep_best: int = 0,
    best_metric: str = "loss",
    best_mode: str = "min",
    async_save: bool = True,
  ):
    self.directory = os.path.abspath(os.path.join(workdir, LATEST_DIR))
    self.best_directory = os.path.abspath(os.path.join(workdir, BEST_DIR))
    self.best_metric = best_metric
    for directory in (self.directory, self.best_directory):
      _remove_incomplete_saves(directory)
    distributed.barrier("incomplete saves removed")  # Process 0 removed them.
    self._latest = self._manager(
      self.directory,
      ocp.CheckpointManagerOptions(
        max_to_keep=keep_last,
        enable_async_checkpointing=async_save,
        create=True,
        cleanup_tmp_directories=True,
      ),
    )
    self._best = None
    if keep_best > 0:
      self._best = self._manager(
        self.best_directory,
        ocp.CheckpointManagerOptions(
          max_to_keep=keep_best,
          best_fn=lambda metrics: metrics[best_metric],
          best_mode=best_mode,
          keep_checkpoints_without_metrics=False,
          enable_async_checkpointing=async_save,
          create=True,
          cleanup_tmp_directories=True,
        ),
      )

  @staticmethod
  def _manager(directory: str, options) -> ocp.CheckpointManager:
    try:
      return _open_manager(directory, options)
    except OSError as e:
      raise CheckpointError(
        f"Cannot create the checkpoint directory {directory} ({_os_reason(e) or e}); make the "
        "workdir writable or choose another --workdir."
      ) from e

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
          "Earlier checkpoints are untouched."
        )
      manager.save(step, args=args, metrics=metrics, force=True)
    except CheckpointError:
      raise
    except Exception as e:  # Disk full or read-only: one line; anything else is a bug.
      error = _write_error(e, step, manager.directory)
      if error is e:
        raise
      raise error from e

  def save(
    self,
    step: int,
    state: Any,
    rng: jax.Array,
    data_iterator: Any,
    config: ml_collections.ConfigDict,
    metrics: Optional[Dict[str, float]] = None,
  ):
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
      metrics=ocp.args.JsonSave(dict(metrics or {})),
    )
    self._write(self._latest, step, args, tree)

  def save_best(
    self,
    step: int,
    state: Any,
    rng: jax.Array,
    config: ml_collections.ConfigDict,
    metrics: Dict[str, float],
  ) -> None:
    """Offers `step` to the best-by-`best_metric` checkpoints (kept only if among the best)."""
    if self._best is None:
      return
    tree = state_tree(state, rng)
    args = ocp.args.Composite(
      state=ocp.args.PyTreeSave(tree),
      config=ocp.args.JsonSave(_config_json(config)),
      metrics=ocp.args.JsonSave(dict(metrics)),
    )
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
          "make the workdir writable. Earlier checkpoints are untouched."
        ) from e

  def restore_latest(
    self,
    abstract_tree: Dict[str, Any],
    data_iterator: Any,
    check_config: Optional[Callable[[Dict[str, Any], int], None]] = None,
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
        items = self._latest.restore(
          step,
          args=ocp.args.Composite(config=ocp.args.JsonRestore(), metrics=ocp.args.JsonRestore()),
        )
      except Exception as e:  # Damaged step: a file missing, truncated or unreadable.
        failures.append(step)
        self._set_aside_damaged(step, e)
        continue
      if check_config is not None:
        check_config(items["config"], step)
      _check_matches(saved_shapes, abstract_tree, where)
      try:
        restored = self._latest.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
              item=abstract_tree,
              restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_tree),
            ),
            data=_DataRestore(data_iterator),
          ),
        )
      except Exception as e:  # Damage the scan cannot see (corrupted bytes).
        failures.append(step)
        self._set_aside_damaged(step, e)
        continue
      state = restored["state"]
      return Restored(
        train_state=state["train_state"],
        rng=state["rng"],
        step=step,
        config=items["config"],
        metrics=dict(items["metrics"] or {}),
      )
    if failures:
      raise CheckpointError(
        f"None of the checkpoints in {self.directory} (steps {', '.join(map(str, steps))}) "
        "can be read (each was moved to discarded/); rerun with --fresh to start over."
      )
    return None

  def _set_aside_damaged(self, step: int, error: BaseException) -> None:
    """Moves a damaged step out of the way of new saves, into `workdir/discarded/`; one line.

    Every process calls it (each found the same damage): process 0 moves, all reload."""
    if jax.process_index() == 0:
      target = discarded_path(os.path.dirname(self.directory), f"damaged-step-{step}-")
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)), target)
      console.warning(
        f"Checkpoint {self.directory}/{step} is damaged ({describe_damage(error)}); "
        f"moved it to {target} and trying the previous one."
      )
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
    later = sorted(int(n) for n in os.listdir(self.best_directory) if n.isdigit() and int(n) > step)
    if later:
      target = discarded_path(os.path.dirname(self.directory), f"best-after-step-{step}-")
      os.makedirs(target)
      for best_step in later:
        shutil.move(
          os.path.join(self.best_directory, str(best_step)), os.path.join(target, str(best_step))
        )
      console.event(
        f"Moved the best checkpoints of steps {', '.join(map(str, later))}, after "
        f"the resumed step, to {target}."
      )
    return later

  def close(self) -> None:
    """Waits for pending saves, then releases orbax's threads."""
    try:
      self.wait()
    finally:
      for manager in filter(None, (self._latest, self._best)):
        manager.close()


def _read_only_manager(directory: str) -> ocp.CheckpointManager:
  """A manager that only reads `directory`, as this process alone."""
  # Not `read_only=True`: orbax then warns "Given directory is read only" about any directory.
  # Without `create`, `max_to_keep` or a save, this manager writes nothing.
  # This process alone reads (in a multi-process run, process 0 evaluates while the others
  # wait): orbax would otherwise wait at barriers for every process.
  return _open_manager(
    directory,
    ocp.CheckpointManagerOptions(
      create=False,
      enable_async_checkpointing=False,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=jax.process_index(), active_processes={jax.process_index()}
      ),
    ),
  )


class CheckpointReader:
  """Reads the steps of one checkpoint folder (`checkpoints/` or `checkpoints_best/`) for
  sampling and evaluation: as this process alone, writing nothing, optimiser states unread.

  A read of a damaged step raises what the file system or orbax raised (`describe_damage`
  says it in one line); a step that does not fit the model raises CheckpointMismatchError.
  The folder may change meanwhile (a run training there rotates old steps away).

  Args:
    directory: the checkpoint folder, e.g. `<workdir>/checkpoints`.
  """

  def __init__(self, directory: str):
    self.directory = directory
    self._manager = _read_only_manager(directory)

  def steps(self) -> List[int]:
    """The finished steps now on disk, newest first (listed again at every call)."""
    self._manager.reload()
    return sorted(self._manager.all_steps(), reverse=True)

  def config(self, step: int) -> Dict[str, Any]:
    """The config `step` was saved with (nested JSON dict), once its arrays read whole."""
    _verify_arrays(os.path.join(self.directory, str(step)))
    return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))[
      "config"
    ]

  def model_state(self, step: int, template: Any) -> Any:
    """`template` (a train state the saved run's config builds) with the parameters and
    BatchNorm statistics of `step`, on this process's first device; the optimiser states
    stay the template's."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    wanted = {
      "train_state": _without_optimizer(
        abstract_state_tree(jax.eval_shape(lambda: template), jax.random.PRNGKey(0), device)[
          "train_state"
        ]
      )
    }
    saved = _saved_shapes(self._manager.item_metadata(step)["state"])
    _check_matches(
      {k: v for k, v in saved.items() if k.startswith("train_state.") and ".opt_state." not in k},
      wanted,
      f"{self.directory}/{step}",
    )
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
          item=wanted,
          restore_args=ocp.checkpoint_utils.construct_restore_args(wanted),
          partial_restore=True,
        )
      ),
    )["state"]["train_state"]
    merged = _merge(flax.serialization.to_state_dict(template), restored)
    return flax.serialization.from_state_dict(template, merged)

  def close(self) -> None:
    self._manager.close()


def _merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
  """`base` with the leaves of the (partial) `update` tree put in."""
  merged = dict(base)
  for key, value in update.items():
    merged[key] = _merge(base[key], value) if isinstance(value, dict) else value
  return merged
