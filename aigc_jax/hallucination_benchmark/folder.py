"""The benchmark's output folder, without jax: what `--out` may be, what it holds, and how
earlier results are moved aside (never deleted) when a run replaces them.

The CLI calls these before jax starts, so a wrong `--out` costs a second, not a plan's tracing.
"""

import datetime
import glob
import os
import shutil
from typing import Iterable, List, Optional, Tuple

import numpy as np

from aigc_jax import workdir

SETTINGS_DIR = "settings"
REPLACED_DIR = "replaced"  # settings/replaced/<UTC time>/: results a rerun replaced.
CLASSIFIER_DIR = "classifier_simple_shapes"
# What `experiments.train` writes in its workdir: its checkpoints, its config and its lock.
TRAINING_MARKERS = (workdir.LATEST_DIR, "config.json", workdir.LOCK_NAME)
EXIT_SAVED = 75  # As an interrupted training run: saved, rerun to resume.
EXIT_NOTHING_SAVED = 130


def training_run_problem(path: str, flag: str = "--out") -> Optional[str]:
  """Why `path` cannot be a command's output folder because it is the workdir of a training
  run (the command would write its own files into that run), or None."""
  markers = [m for m in TRAINING_MARKERS if os.path.exists(os.path.join(path, m))]
  if markers:
    return (
      f"{flag} {path} is the workdir of a training run (it holds {markers[0]}); pass "
      "another folder, new or of an earlier run of this command."
    )
  return None


def setting_file(out_dir: str, stem: str, ext: str) -> str:
  """`out_dir/settings/<stem>.<ext>`: a setting's measurements (json) or samples (npz)."""
  return os.path.join(out_dir, SETTINGS_DIR, f"{stem}.{ext}")


def save_samples(out_dir: str, stem: str, samples: np.ndarray, valid: np.ndarray) -> None:
  """Seed 0's final samples `[N, ...]` and their validity `[N]` bool, for the figures."""
  os.makedirs(os.path.join(out_dir, SETTINGS_DIR), exist_ok=True)
  np.savez_compressed(setting_file(out_dir, stem, "npz"), samples=samples, valid=valid)


def saved_samples(out_dir: str, stem: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
  """(samples, valid) saved by `save_samples`, or None."""
  path = setting_file(out_dir, stem, "npz")
  if not os.path.exists(path):
    return None
  with np.load(path) as f:
    return f["samples"], f["valid"]


def saved_stems(out_dir: str) -> List[str]:
  """Names `<dataset>__<setting>` of every finished setting saved in `out_dir`, sorted."""
  paths = glob.glob(os.path.join(out_dir, SETTINGS_DIR, "*__*.json"))
  return sorted(os.path.basename(p)[: -len(".json")] for p in paths)


def _files_of(out_dir: str, stem: str) -> List[str]:
  directory = os.path.join(out_dir, SETTINGS_DIR)
  paths = [os.path.join(directory, f"{stem}.{ext}") for ext in ("json", "npz")]
  paths += glob.glob(os.path.join(directory, glob.escape(stem) + "+gmm*.npz"))
  return [p for p in paths if os.path.exists(p)]


def move_aside(out_dir: str, stems: Iterable[str]) -> Optional[str]:
  """Moves the files of the settings `stems` (json, samples) into
  settings/replaced/<UTC time>/; returns that folder, or None when there was nothing."""
  paths = [p for stem in stems for p in _files_of(out_dir, stem)]
  if not paths:
    return None
  time = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
  target = os.path.join(out_dir, SETTINGS_DIR, REPLACED_DIR, time)
  os.makedirs(target)
  for path in paths:
    shutil.move(path, os.path.join(target, os.path.basename(path)))
  return target


def _plural(count: int, word: str) -> str:
  return f"{count} {word}" if count == 1 else f"{count} {word}s"


def interrupted(out_dir: str) -> Tuple[str, int]:
  """(one line, exit code) of a benchmark stopped by Ctrl-C: what `out_dir` holds that a
  rerun reuses (EXIT_SAVED), or that nothing was saved (EXIT_NOTHING_SAVED)."""
  stems = saved_stems(out_dir)
  classifier = os.path.isdir(os.path.join(out_dir, CLASSIFIER_DIR, "checkpoints"))
  saved = []
  if stems:
    saved.append(
      f"{_plural(len(stems), 'finished setting')} under {os.path.join(out_dir, SETTINGS_DIR)}"
    )
  if classifier:
    saved.append(
      f"the shapes classifier's checkpoints under {os.path.join(out_dir, CLASSIFIER_DIR)}"
    )
  if not saved:
    return f"Interrupted by Ctrl-C; nothing was saved in {out_dir}.", EXIT_NOTHING_SAVED
  return (
    f"Interrupted by Ctrl-C; saved: {' and '.join(saved)}; run the same command again "
    "to resume (finished settings are reused).",
    EXIT_SAVED,
  )
