"""Runs a benchmark plan into a directory; each setting is saved as it finishes.

Layout of `out_dir`:
  settings/<dataset>__<setting>.json   one setting's measurements (every seed and checkpoint)
  settings/<dataset>__<setting>.npz    seed 0's final samples and their validity (figures)
  settings/<dataset>__<setting>+gmm<K>.npz   the same of an AE / VAE's K-component latent GMM,
                                       whose measurements are in the setting's json and whose
                                       rows the tables name "<setting>+gmm<K>"
  classifier_simple_shapes/            the shapes classifier's run (features and oracle)
  results.csv / .md / .json, calibration.csv, figures/*.png   rebuilt from settings/ each run

Resuming: a setting whose saved file has the same config, seeds and checkpoints is not
trained again, so an interrupted run continues with the next setting when rerun, and
`--only` runs can be split over processes or machines and joined in one folder.
"""
import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from aigc_jax.evaluation.features import ClassifierFeatureExtractor
from aigc_jax.hallucination_benchmark import datasets as datasets_lib
from aigc_jax.hallucination_benchmark import figures, measure, tables
from aigc_jax.hallucination_benchmark.protocols import Plan
from aigc_jax.hallucination_benchmark.settings import LATENT_GMM_COMPONENTS, Setting
from aigc_jax.hallucination_benchmark.train import latent_gmm_group, train_setting


def _setting_path(out_dir: str, setting: Setting, ext: str) -> str:
  return os.path.join(out_dir, "settings", f"{setting.dataset}__{setting.name}.{ext}")


def _to_json(value):
  if isinstance(value, dict):
    return {str(k): _to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_to_json(v) for v in value]
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, (np.floating, np.integer, np.bool_)):
    return value.item()
  return value


def load_saved(out_dir: str, setting: Setting) -> Optional[Dict[str, Any]]:
  """The saved result of `setting`, or None when absent or made with another config."""
  path = _setting_path(out_dir, setting, "json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  return saved if saved.get("fingerprint") == setting.fingerprint() else None


def _save_samples(out_dir: str, setting: Setting, samples, valid) -> None:
  if samples is not None:
    os.makedirs(os.path.join(out_dir, "settings"), exist_ok=True)
    np.savez_compressed(_setting_path(out_dir, setting, "npz"), samples=samples, valid=valid)


def _latent_gmm_setting(setting: Setting, num_components: int) -> Setting:
  return dataclasses.replace(setting, name=f"{setting.name}+gmm{num_components}")


def latent_gmm_records(setting: Setting, record: Dict[str, Any]
                       ) -> List[Tuple[Setting, Dict[str, Any]]]:
  """The rows "<name>+gmm<K>" of an AE / VAE setting: each latent GMM's samples as a model of
  its own (same training, seeds and checkpoints); [] for other settings."""
  derived = []
  for num_components in LATENT_GMM_COMPONENTS:
    group = latent_gmm_group(num_components)
    checkpoints = {step: [{"generation": m[group]} for m in per_seed if group in m]
                   for step, per_seed in (record.get("checkpoints") or {}).items()}
    if any(checkpoints.values()):
      derived.append((_latent_gmm_setting(setting, num_components),
                      {"checkpoints": checkpoints, "unavailable": "",
                       "seconds": record.get("seconds", float("nan"))}))
  return derived


def _save(out_dir: str, setting: Setting, record: Dict[str, Any], samples=None, valid=None):
  os.makedirs(os.path.join(out_dir, "settings"), exist_ok=True)
  _save_samples(out_dir, setting, samples, valid)
  path = _setting_path(out_dir, setting, "json")
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(_to_json(record), f)
  os.replace(path + ".tmp", path)  # Whole or absent, even if interrupted.


def shapes_classifier(out_dir: str, classifier_config, data_dir: Optional[str]):
  """Trains (or resumes, or reloads) the simple_shapes classifier under out_dir."""
  # Imported here: the training loop pulls in orbax and the writers.
  from aigc_jax import training  # pylint: disable=import-outside-toplevel
  if data_dir:
    os.makedirs(data_dir, exist_ok=True)
    classifier_config.dataset.data_dir = data_dir
  workdir = os.path.join(out_dir, "classifier_simple_shapes")
  results = training.train_and_evaluate(classifier_config, workdir)
  return ClassifierFeatureExtractor.from_state(results["state"])


def build_references(plan: Plan, out_dir: str, classifier_config, data_dir: Optional[str],
                     progress: Callable[[str], None]) -> Dict[str, measure.Reference]:
  references = {}
  for dataset_name in plan.datasets:
    start = time.perf_counter()
    dataset = datasets_lib.load(dataset_name)
    extractor = None
    if dataset.spec.kind == "image":
      extractor = shapes_classifier(out_dir, classifier_config, data_dir)
    references[dataset_name] = measure.build_reference(dataset, extractor,
                                                       plan.num_samples[dataset_name])
    progress(f"{dataset_name}: references and floors in {time.perf_counter() - start:.0f} s")
  return references


def run_plan(plan: Plan, out_dir: str, classifier_config, *, data_dir: Optional[str] = None,
             progress: Callable[[str], None] = print, make_figures: bool = True
             ) -> Dict[str, Any]:
  """Trains and measures every setting of `plan` not already saved, then writes the outputs.

  Returns the results dict written to results.json.
  """
  os.makedirs(out_dir, exist_ok=True)
  references = build_references(plan, out_dir, classifier_config, data_dir, progress)
  records = []
  for setting in plan.settings:
    record = load_saved(out_dir, setting)
    if record is not None:
      progress(f"{setting.key}: already measured, reused")
    else:
      record = {"fingerprint": setting.fingerprint(), "unavailable": setting.unavailable}
      samples = valid = None
      if setting.unavailable:
        progress(f"{setting.key}: {setting.unavailable}")
      else:
        progress(f"{setting.key}: training {len(setting.seeds)} seeds for "
                 f"{setting.config.train.num_steps} steps")
        result = train_setting(setting, references[setting.dataset], progress=progress)
        samples, valid = result.pop("final_samples", None), result.pop("final_valid", None)
        record.update({k: v for k, v in result.items() if not k.startswith("final_")})
        for num_components in LATENT_GMM_COMPONENTS:
          group = latent_gmm_group(num_components)
          _save_samples(out_dir, _latent_gmm_setting(setting, num_components),
                        result.get(f"final_{group}_samples"), result.get(f"final_{group}_valid"))
      _save(out_dir, setting, record, samples, valid)
      record = json.loads(json.dumps(_to_json(record)))  # As it reads back: string keys.
    records.append((setting, record))
    records += latent_gmm_records(setting, record)
  results = tables.write_all(out_dir, plan, records, references)
  if make_figures:
    results["figures"] = figures.write_all(out_dir, plan, records, references)
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
      json.dump(_to_json(results), f, indent=1)
  return results


def saved_samples(out_dir: str, setting: Setting):
  """(samples, valid) of seed 0's final checkpoint, or None."""
  path = _setting_path(out_dir, setting, "npz")
  if not os.path.exists(path):
    return None
  with np.load(path) as f:
    return f["samples"], f["valid"]
