"""One short classifier run on digits28, trained once per test session and shared by the
classifier tests and the planted-hallucination tests (training is the slow part)."""

import json
import os

from aigc_jax import training
from experiments.configs import classifier_digits

NUM_STEPS = 150
BATCH_SIZE = 64
LOG_EVERY = 15

_CACHE = {}


def short_config(data_dir: str):
  """`classifier_digits` cut to NUM_STEPS steps of BATCH_SIZE, evaluated only at the end."""
  config = classifier_digits.get_config()
  config.dataset.data_dir = data_dir
  config.train.num_steps = NUM_STEPS
  config.train.batch_size = BATCH_SIZE
  config.train.log_every = LOG_EVERY
  config.train.eval_every = 0
  config.train.sample_every = 0
  return config


def trained_digits_classifier(tmp_path_factory):
  """`{"results", "workdir", "data_dir"}` of the run; trained on the first call only."""
  if not _CACHE:
    root = tmp_path_factory.mktemp("classifier_digits")
    data_dir, workdir = str(root / "tfds"), str(root / "run")
    os.makedirs(data_dir)  # config.dataset.data_dir must exist.
    results = training.train_and_evaluate(short_config(data_dir), workdir)
    _CACHE.update(results=results, workdir=workdir, data_dir=data_dir)
  return _CACHE


def read_metrics(workdir: str, split: str):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == split]
