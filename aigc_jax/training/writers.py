"""Scalar writers: TensorBoard (tensorboardX) and `metrics.jsonl`, written by the loop only."""
import json
import os
from typing import Mapping

import numpy as np
from tensorboardX import SummaryWriter


class MetricWriter:
  """Writes `{name: scalar}` under a prefix ("train", "eval") at a step to both sinks.

  `metrics.jsonl` holds one JSON object per call: `{"step": s, "split": p, name: value...}`.
  """

  def __init__(self, workdir: str):
    self._summary = SummaryWriter(os.path.join(workdir, "tensorboard"))
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")

  def write_scalars(self, step: int, split: str, scalars: Mapping[str, float]) -> None:
    record = {"step": int(step), "split": split}
    for name, value in scalars.items():
      value = float(np.asarray(value))
      record[name] = value
      self._summary.add_scalar(f"{split}/{name}", value, int(step))
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    self._summary.close()
    self._jsonl.close()
