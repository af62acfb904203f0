"""Writers of what a run logs: scalars to TensorBoard (tensorboardX) and `metrics.jsonl`, the
PNG figures of samples and reconstructions, and those figures to TensorBoard; used by the loop
only."""

import json
import os
import sys
from typing import List, Mapping

import jax
import numpy as np
from PIL import Image

from aigc_jax.errors import WorkdirError
from aigc_jax.image_grid import (
  interleave_pairs,
  save_image_grid,
  save_labelled_rows,
  save_points_figure,
)


def _import_summary_writer():
  """tensorboardX's SummaryWriter, imported without PyTorch.

  tensorboardX imports torch whenever it is installed, only to accept torch tensors (we pass
  numpy): 2.5 s of every run's start-up on a machine with PyTorch. `None` in `sys.modules`
  makes its `import torch` fail as if torch were absent; torch stays importable afterwards.
  """
  if "torch" in sys.modules:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

    return SummaryWriter
  sys.modules["torch"] = None
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
  finally:
    del sys.modules["torch"]
  return SummaryWriter


SummaryWriter = _import_summary_writer()


class MetricWriter:
  """Writes `{name: scalar}` under a prefix ("train", "eval") at a step to both sinks.

  `metrics.jsonl` holds one JSON object per call: `{"step": s, "split": p, name: value...}`.
  """

  def __init__(self, workdir: str, purge_step: int = 0):
    # purge_step: a resumed run hides TensorBoard events of the lost steps >= purge_step.
    self._summary = SummaryWriter(
      os.path.join(workdir, "tensorboard"), purge_step=purge_step or None
    )
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")

  def write_scalars(self, step: int, split: str, scalars: Mapping[str, float]) -> None:
    record = {"step": int(step), "split": split}
    for name, value in scalars.items():
      value = float(np.asarray(value))
      record[name] = value
      self._summary.add_scalar(f"{split}/{name}", value, int(step))
    try:
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
    except OSError as e:
      raise WorkdirError(
        f"Cannot write {self._jsonl.name} ({e.strerror or e}); free disk space or make the "
        "workdir writable. Earlier checkpoints are untouched."
      ) from e

  def write_image(self, step: int, name: str, png_path: str) -> None:
    """Shows a PNG written to disk (a sample grid, say) in TensorBoard under `images/<name>`."""
    with Image.open(png_path) as image:
      picture = np.asarray(image.convert("RGB"))
    self._summary.add_image(f"images/{name}", picture, int(step), dataformats="HWC")

  def close(self) -> None:
    self._summary.close()
    self._jsonl.close()


def class_rows(num_classes: int, num_samples: int) -> np.ndarray:
  """`[K * max(1, num_samples // K)]` int32 labels, class k repeated on row k of the grid."""
  return np.repeat(np.arange(num_classes, dtype=np.int32), max(1, num_samples // num_classes))


def write_image_grids(
  family, state, images, key, directory: str, step: int, num_samples: int, spec
) -> List[str]:
  """Writes the sample figure and, for families with an encoder, test inputs beside their
  reconstructions; returns the PNG paths.

  Samples of 2-D points are drawn on labelled axes with the mixture's true modes (`spec.mixture`)
  as red crosses; a conditional family's samples make one row per class, labelled with the
  class each row was asked for.
  """
  paths = []
  if family.generate is not None:
    path = os.path.join(directory, f"samples_{step:08d}.png")
    if spec.kind == "points":
      samples = jax.device_get(family.generate(state, key, num_samples))
      modes = None if spec.mixture is None else spec.mixture.means
      title = f"{len(samples)} samples at step {step}" + (
        f"; red crosses: the {len(modes)} true modes" if modes is not None else ""
      )
      paths.append(save_points_figure(path, samples, modes=modes, title=title))
    elif family.conditional:
      labels = class_rows(spec.num_classes, num_samples)
      samples = jax.device_get(family.generate(state, key, len(labels), labels))
      paths.append(
        save_labelled_rows(
          path,
          samples,
          [str(k) for k in range(spec.num_classes)],
          upscale=2,
          title="row: class asked for",
        )
      )
    else:
      paths.append(
        save_image_grid(path, jax.device_get(family.generate(state, key, num_samples)), upscale=2)
      )
  if family.reconstruct is not None:
    inputs = images[: max(num_samples // 2, 1)]
    outputs = family.reconstruct(state, inputs, key)
    pairs = interleave_pairs(inputs, jax.device_get(outputs))
    paths.append(
      save_image_grid(
        os.path.join(directory, f"reconstructions_{step:08d}.png"),
        pairs,
        num_columns=2 * int(np.ceil(np.sqrt(len(inputs)))),
        upscale=2,
      )
    )
  return paths
