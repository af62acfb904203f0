"""Writers of what a run logs: scalars to TensorBoard (tensorboardX) and `metrics.jsonl`, image
grids to TensorBoard; used by the loop only."""
import json
import os
from typing import Mapping

import numpy as np
from PIL import Image
from tensorboardX import SummaryWriter

from aigc_jax.errors import WorkdirError


class MetricWriter:
  """Writes `{name: scalar}` under a prefix ("train", "eval") at a step to both sinks.

  `metrics.jsonl` holds one JSON object per call: `{"step": s, "split": p, name: value...}`.
  """

  def __init__(self, workdir: str, purge_step: int = 0):
    # purge_step: a resumed run hides TensorBoard events of the lost steps >= purge_step.
    self._summary = SummaryWriter(os.path.join(workdir, "tensorboard"),
                                  purge_step=purge_step or None)
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
          "workdir writable. Earlier checkpoints are untouched.") from e

  def write_image(self, step: int, name: str, png_path: str) -> None:
    """Shows a PNG written to disk (a sample grid, say) in TensorBoard under `images/<name>`."""
    with Image.open(png_path) as image:
      picture = np.asarray(image.convert("RGB"))
    self._summary.add_image(f"images/{name}", picture, int(step), dataformats="HWC")

  def close(self) -> None:
    self._summary.close()
    self._jsonl.close()
