"""A trained model for sampling and evaluation: config, family and state loaded from a workdir.

This module sits above training (it builds the family a run's config names) and below
evaluation, which reads runs only through it: `load_for_inference` for a generative run,
`load_classifier` for the classifier whose features and class probabilities the rates use
(`evaluation.features.ClassifierFeatureExtractor.from_state` of the state it returns).

Which checkpoint: the newest readable step of `checkpoints/` and `checkpoints_best/`
together, the copy in `checkpoints/` first (`inference_candidates`); so a damaged newest step
is read from its intact copy in `checkpoints_best/` if there is one, and only then an older
step, said in one line. Reading never changes the workdir, and the run may be training
meanwhile: a step that its rotation removes while it is read is not damage.
"""

import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import ml_collections

from aigc_jax import console, data
from aigc_jax.checkpointing import CheckpointError, CheckpointReader, describe_damage
from aigc_jax.errors import ConfigError, UserError
from aigc_jax.training import family as families
from aigc_jax.workdir import BEST_DIR, LATEST_DIR

# How often the steps are listed again after one vanished while it was read (rotation).
_RELISTS = 10


def inference_candidates(
  steps_by_directory: Dict[str, List[int]], step: Optional[int]
) -> List[Tuple[int, str]]:
  """The (step, directory) pairs to try, in order: newest step first, and for one step the
  directories in the order given (`checkpoints/` before its copy in `checkpoints_best/`).

  `step` keeps only that step's copies.
  """
  order = {directory: index for index, directory in enumerate(steps_by_directory)}
  pairs = [
    (s, d) for d, steps in steps_by_directory.items() for s in steps if step is None or s == step
  ]
  return sorted(pairs, key=lambda pair: (-pair[0], order[pair[1]]))


def _load_step(reader: CheckpointReader, step: int, get_family: Callable):
  """(config, family, state) of one step: the family its config builds, with its arrays."""
  config = ml_collections.ConfigDict(reader.config(step))
  family = get_family(config, data.get_dataset_spec(config.dataset.name).sample_shape)
  template = jax.jit(family.init)(jax.random.PRNGKey(0))  # One compile, not one per op.
  return config, family, reader.model_state(step, template)


def load_for_inference(
  workdir: str,
  step: Optional[int] = None,
  *,
  best: bool = False,
  get_family: Optional[Callable] = None,
) -> Tuple[Any, Any, Any, int]:
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
  get_family = get_family or families.get_family
  names = (BEST_DIR,) if best else (LATEST_DIR, BEST_DIR)
  directories = [os.path.abspath(os.path.join(workdir, n)) for n in names]
  directories = [d for d in directories if os.path.isdir(d)]
  if not directories:
    raise CheckpointError(
      f"There are no checkpoints in {os.path.abspath(os.path.join(workdir, names[0]))}; "
      f"train first with python -m experiments.train --workdir {workdir}."
    )
  readers = {d: CheckpointReader(d) for d in directories}
  try:
    damaged, reasons = [], []  # (step, directory) and `describe_damage` of each unreadable one.
    for _ in range(_RELISTS):  # Each pass re-lists after a step vanished under us.
      steps_by_directory = {d: reader.steps() for d, reader in readers.items()}
      candidates = inference_candidates(steps_by_directory, step)
      if step is not None and not candidates:
        available = sorted(
          {s for steps in steps_by_directory.values() for s in steps}, reverse=True
        )
        raise CheckpointError(
          f"There is no checkpoint of step {step} in {' or '.join(directories)}; "
          f"available: {', '.join(map(str, available)) or 'none'} (training keeps only "
          "the newest checkpoint.keep_last)."
        )
      rotated = False
      for candidate, directory in (c for c in candidates if c not in damaged):
        try:
          loaded = _load_step(readers[directory], candidate, get_family)
        except UserError:  # A mismatch, or a config naming what cannot be built: no damage.
          raise
        except Exception as e:  # pylint: disable=broad-except
          if not os.path.isdir(os.path.join(directory, str(candidate))):
            rotated = True  # Removed by the training run's rotation while we read it.
            break
          damaged.append((candidate, directory))
          reasons.append(describe_damage(e))
          continue
        if damaged:
          console.warning(_fallback_message(candidate, directory, damaged, reasons))
        return (*loaded, candidate)
      if not rotated:
        break
  finally:
    for reader in readers.values():
      reader.close()
  for (damaged_step, directory), reason in zip(damaged, reasons):
    console.warning(f"Checkpoint {directory}/{damaged_step} is damaged ({reason}).")
  raise CheckpointError(
    f"No readable checkpoint in {' or '.join(directories)}; train again "
    f"with python -m experiments.train --workdir {workdir}."
  )


def _fallback_message(
  step: int, directory: str, damaged: List[Tuple[int, str]], reasons: List[str]
) -> str:
  """One line: which checkpoints are damaged (file and reason), and which one is read instead."""
  what = "; ".join(f"{d}/{s} ({reason})" for (s, d), reason in zip(damaged, reasons))
  why = (
    "an intact copy of the same step"
    if any(s == step for s, _ in damaged)
    else "the newest readable one"
  )
  return (
    f"Checkpoint{'s' if len(damaged) > 1 else ''} {what} "
    f"{'are' if len(damaged) > 1 else 'is'} damaged; reading {directory}/{step} "
    f"instead, {why}."
  )


def load_classifier(workdir: str, step: Optional[int] = None, dataset: Optional[str] = None) -> Any:
  """The train state of the classifier run in `workdir` (the newest step, or `step`).

  For `ClassifierFeatureExtractor.from_state`. `dataset`, when given, must be the dataset the
  classifier was trained on; a run of another family is refused in one sentence.
  """
  config, _, state, _ = load_for_inference(workdir, step=step)
  if config.model.family != "classifier":
    raise ConfigError(
      f"{workdir} holds a {config.model.family!r} run, not a 'classifier' run; point the "
      "feature extractor at a workdir trained with a classifier config."
    )
  if dataset is not None and config.dataset.name != dataset:
    raise ConfigError(
      f"The classifier in {workdir} was trained on {config.dataset.name!r}, not "
      f"{dataset!r}; train a classifier on {dataset!r}."
    )
  return state
