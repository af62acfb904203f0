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
`--only` runs can be split over processes or machines and joined in one folder: the tables
are rebuilt from every finished setting in the folder, not only this run's.

A folder holds one protocol's results: a run whose plan would replace a saved setting by
another one (other steps, seeds, checkpoints, config), or that finds settings of another
protocol, `--quick` or sample count, or measured by an older version of the measurement
layer (`MEASUREMENT`), is refused before any training (`conflicts`) unless `overwrite`, which
moves those files to settings/replaced/<UTC time>/.
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import ml_collections
import numpy as np

from aigc_jax import latent_gmm
from aigc_jax.errors import UserError
from aigc_jax.evaluation.features import ClassifierFeatureExtractor
from aigc_jax.hallucination_benchmark import datasets as datasets_lib
from aigc_jax.hallucination_benchmark import figures, folder, measure, tables
from aigc_jax.hallucination_benchmark.protocols import Plan
from aigc_jax.hallucination_benchmark.settings import LATENT_GMM_COMPONENTS, Setting
from aigc_jax.hallucination_benchmark.variants import FAMILIES
from aigc_jax.hallucination_benchmark.train import latent_gmm_group, train_setting
from aigc_jax.workdir import newest_step

# Fingerprint keys named as the flag that sets them; "checkpoints" follows from the steps.
_FRIENDLY_KEYS = {
  "config.train.num_steps": "steps",
  "seeds": "seeds",
  "latent_gmm_codes": "latent-GMM codes",
}
_SHOWN_DIFFERENCES = 3
# The version of the measurement layer a saved setting was measured by. 2: the rates of
# `aigc_jax.evaluation.evaluators` under their canonical names, the real sets of
# `evaluation.reference`. Files of version 1 (no "measurement" key: `manifold_k3_train`,
# `unrecognisable`..., the first N training examples as reference) are not mixed in: a run
# meeting one is refused (`conflicts`), and --overwrite moves it aside and retrains it.
MEASUREMENT = 2
OLD_MEASUREMENT = "measurement version 1 -> 2"


def _read_record(out_dir: str, stem: str) -> Dict[str, Any]:
  with open(folder.setting_file(out_dir, stem, "json"), encoding="utf-8") as f:
    return json.load(f)


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
  path = folder.setting_file(out_dir, setting.stem, "json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  return saved if saved.get("fingerprint") == setting.fingerprint() else None


def _flat(value, prefix: str = "") -> Dict[str, Any]:
  if isinstance(value, dict):
    out = {}
    for key, item in value.items():
      out.update(_flat(item, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: value}


def _shown(key: str, value) -> str:
  if value is None:
    return "(none)"
  if key == "seeds" and isinstance(value, list):
    return str(len(value))
  text = json.dumps(value)
  return text if len(text) <= 30 else text[:27] + "..."


def fingerprint_difference(saved: str, wanted: str) -> str:
  """What differs between two fingerprints, in a few words: "steps 50 -> 60"."""
  old, new = _flat(json.loads(saved)), _flat(json.loads(wanted))
  for flat in (old, new):  # An absent count is the default one.
    flat.setdefault("latent_gmm_codes", latent_gmm.MAX_FIT_CODES)
  keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
  if "config.train.num_steps" in keys:
    keys.remove("checkpoints")  # Placed at fractions of the steps: no news.
  keys.sort(key=lambda k: (k not in _FRIENDLY_KEYS, k))
  parts = [
    f"{_FRIENDLY_KEYS.get(k, k)} {_shown(k, old.get(k))} -> {_shown(k, new.get(k))}"
    for k in keys[:_SHOWN_DIFFERENCES]
  ]
  if len(keys) > _SHOWN_DIFFERENCES:
    parts.append(f"{len(keys) - _SHOWN_DIFFERENCES} more keys")
  return ", ".join(parts) or "the fingerprint's format"


def _run_info(plan: Plan, dataset: str) -> Dict[str, Any]:
  """What a saved setting records of the run that made it, to keep one folder's rows alike."""
  return {
    "protocol": plan.protocol,
    "quick": plan.quick,
    "num_samples": plan.num_samples[dataset],
    "measurement": MEASUREMENT,
  }


def _run_difference(plan: Plan, dataset: str, record: Dict[str, Any]) -> str:
  """How the run that saved `record` differs from `plan` ("" when alike or not recorded:
  files saved before the record held it)."""
  if record.get("measurement") != MEASUREMENT and "checkpoints" in record:
    return OLD_MEASUREMENT
  if "protocol" not in record:
    return ""
  if dataset not in plan.num_samples:  # A dataset this protocol does not have.
    return f"protocol {record['protocol']} -> {plan.protocol}"
  wanted = _run_info(plan, dataset)
  names = {"protocol": "protocol", "quick": "--quick", "num_samples": "samples"}
  shown = lambda v: ("on" if v else "off") if isinstance(v, bool) else v
  return ", ".join(
    f"{names[k]} {shown(record.get(k))} -> {shown(v)}"
    for k, v in wanted.items()
    if record.get(k) != v
  )


def conflicts(plan: Plan, out_dir: str) -> List[Tuple[str, str]]:
  """(saved setting, what differs) for each setting saved in `out_dir` that this plan would
  replace (same name, other fingerprint) or that another kind of run made (protocol,
  --quick, sample count): running on would lose it from the results."""
  wanted = {s.stem: s for s in plan.settings}
  out = []
  for stem in folder.saved_stems(out_dir):
    record = _read_record(out_dir, stem)
    why = _run_difference(plan, stem.split("__", 1)[0], record)
    setting = wanted.get(stem)
    if not why and setting is not None and record.get("fingerprint") != setting.fingerprint():
      why = fingerprint_difference(record.get("fingerprint") or "{}", setting.fingerprint())
    if why:
      out.append((stem, why))
  return out


def check_folder(
  plan: Plan, out_dir: str, overwrite: bool, progress: Callable[[str], None]
) -> None:
  """Refuses (UserError) a run that would replace saved settings, unless `overwrite`: then
  their files are moved to settings/replaced/<time>/."""
  found = conflicts(plan, out_dir)
  if not found:
    return
  if overwrite:
    target = folder.move_aside(out_dir, [stem for stem, _ in found])
    progress(f"--overwrite: moved {len(found)} saved setting(s) made with other flags to {target}")
    return
  stem, why = found[0]
  more = f" and {len(found) - 1} more saved settings" if len(found) > 1 else ""
  if why == OLD_MEASUREMENT:
    raise UserError(
      f"{out_dir} holds {folder.SETTINGS_DIR}/{stem}.json{more} measured by an older version "
      "of the benchmark (old rate names such as manifold_k3_train, another reference rule); "
      "pass another --out, or pass --overwrite to move the old files to "
      f"{folder.SETTINGS_DIR}/{folder.REPLACED_DIR}/<time>/ and retrain."
    )
  raise UserError(
    f"{out_dir} holds {folder.SETTINGS_DIR}/{stem}.json made with other flags ({why}){more}; "
    "rerun with the flags that made it to reuse it, pass another --out, or pass --overwrite "
    f"to replace it (the old files go to {folder.SETTINGS_DIR}/{folder.REPLACED_DIR}/<time>/)."
  )


def _setting_info(setting: Setting) -> Dict[str, Any]:
  """Enough of `setting` to rebuild it for the tables of a later run that leaves it out."""
  return {
    "dataset": setting.dataset,
    "name": setting.name,
    "family": setting.family,
    "variant": setting.variant,
    "knobs": setting.knobs,
    "config": json.loads(setting.config_json()),
    "seeds": list(setting.seeds),
    "checkpoints": list(setting.checkpoints),
    "unavailable": setting.unavailable,
    "latent_gmm_codes": setting.latent_gmm_codes,
  }


def saved_setting(stem: str, record: Dict[str, Any]) -> Setting:
  """The Setting a saved record was made by (for the tables; never trained again).

  Records saved before they held `setting` give what their fingerprint holds: the config,
  seeds and checkpoints; their knobs are unknown (None) and their variant file "".
  """
  info = record.get("setting")
  if info is None:
    fingerprint = json.loads(record["fingerprint"])
    dataset, name = stem.split("__", 1)
    config = ml_collections.ConfigDict(fingerprint["config"])
    info = {
      "dataset": dataset,
      "name": name,
      "family": config.model.family,
      "variant": "",
      "knobs": None,
      "config": fingerprint["config"],
      "seeds": fingerprint["seeds"],
      "checkpoints": fingerprint["checkpoints"],
      "unavailable": record.get("unavailable", ""),
      "latent_gmm_codes": fingerprint.get("latent_gmm_codes", latent_gmm.MAX_FIT_CODES),
    }
  return Setting(
    dataset=info["dataset"],
    name=info["name"],
    family=info["family"],
    variant=info["variant"],
    knobs=info["knobs"],
    config=ml_collections.ConfigDict(info["config"]),
    seeds=tuple(info["seeds"]),
    checkpoints=tuple(info["checkpoints"]),
    unavailable=info["unavailable"],
    latent_gmm_codes=info["latent_gmm_codes"],
  )


def _row_order(plan: Plan):
  datasets = list(dict.fromkeys(list(plan.num_samples) + list(plan.datasets)))
  return lambda setting: (
    datasets.index(setting.dataset) if setting.dataset in datasets else len(datasets),
    setting.name not in FAMILIES,
    FAMILIES.index(setting.name) if setting.name in FAMILIES else 0,
    setting.name,
  )


def folder_plan(plan: Plan, out_dir: str) -> Tuple[Plan, Dict[str, Dict[str, Any]]]:
  """`plan` with every other setting saved in `out_dir` (rows of the tables), and their
  records by setting key. Run after `check_folder`: every saved setting is of this kind."""
  wanted = {s.stem for s in plan.settings}
  extra, records = [], {}
  for stem in folder.saved_stems(out_dir):
    if stem in wanted or stem.split("__", 1)[0] not in plan.num_samples:
      continue
    record = _read_record(out_dir, stem)
    setting = saved_setting(stem, record)
    extra.append(setting)
    records[setting.key] = record
  settings = sorted(plan.settings + tuple(extra), key=_row_order(plan))
  return dataclasses.replace(plan, settings=tuple(settings)), records


def _latent_gmm_setting(setting: Setting, num_components: int) -> Setting:
  return dataclasses.replace(setting, name=f"{setting.name}+gmm{num_components}")


def latent_gmm_records(
  setting: Setting, record: Dict[str, Any]
) -> List[Tuple[Setting, Dict[str, Any]]]:
  """The rows "<name>+gmm<K>" of an AE / VAE setting: each latent GMM's samples as a model of
  its own (same training, seeds and checkpoints); [] for other settings."""
  derived = []
  for num_components in LATENT_GMM_COMPONENTS:
    group = latent_gmm_group(num_components)
    checkpoints = {
      step: [{"generation": m[group]} for m in per_seed if group in m]
      for step, per_seed in (record.get("checkpoints") or {}).items()
    }
    if any(checkpoints.values()):
      derived.append(
        (
          _latent_gmm_setting(setting, num_components),
          {
            "checkpoints": checkpoints,
            "unavailable": "",
            "seconds": record.get("seconds", float("nan")),
          },
        )
      )
  return derived


def _save(out_dir: str, setting: Setting, record: Dict[str, Any]) -> None:
  os.makedirs(os.path.join(out_dir, folder.SETTINGS_DIR), exist_ok=True)
  path = folder.setting_file(out_dir, setting.stem, "json")
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(_to_json(record), f)
  os.replace(path + ".tmp", path)  # Whole or absent, even if interrupted.


def shapes_classifier(
  out_dir: str, classifier_config, data_dir: Optional[str], progress: Callable[[str], None] = print
):
  """Trains (or resumes, or reloads) the simple_shapes classifier under out_dir."""
  # Imported here: the training loop pulls in orbax and the writers.
  from aigc_jax import inference, training  # pylint: disable=import-outside-toplevel

  workdir = os.path.join(out_dir, folder.CLASSIFIER_DIR)
  step = newest_step(workdir)
  if step is not None and step >= classifier_config.train.num_steps:
    # Loaded, not passed to the training loop, whose "already at step N" note names a
    # training flag the benchmark does not have.
    progress(f"simple_shapes classifier: reused the finished run in {workdir} (step {step})")
    return ClassifierFeatureExtractor.from_state(
      inference.load_classifier(workdir, step=step, dataset="simple_shapes")
    )
  if data_dir:
    os.makedirs(data_dir, exist_ok=True)
    classifier_config.dataset.data_dir = data_dir
  results = training.train_and_evaluate(classifier_config, workdir)
  return ClassifierFeatureExtractor.from_state(results["state"])


def build_setups(
  plan: Plan,
  out_dir: str,
  classifier_config,
  data_dir: Optional[str],
  progress: Callable[[str], None],
) -> Dict[str, measure.DatasetSetup]:
  """Per dataset of `plan`: its arrays and the evaluation layer's `Reference` (features,
  floors), with the shapes classifier as features and oracle on images."""
  setups = {}
  for dataset_name in plan.datasets:
    start = time.perf_counter()
    dataset = datasets_lib.load(dataset_name)
    extractor = None
    if dataset.spec.kind == "image":
      extractor = shapes_classifier(out_dir, classifier_config, data_dir, progress)
    setups[dataset_name] = measure.dataset_setup(dataset, extractor, plan.num_samples[dataset_name])
    progress(f"{dataset_name}: references and floors in {time.perf_counter() - start:.0f} s")
  return setups


def _train_and_save(
  plan: Plan,
  setting: Setting,
  out_dir: str,
  setup: measure.DatasetSetup,
  progress: Callable[[str], None],
) -> Dict[str, Any]:
  """Trains and measures `setting` (unless unavailable), saves it; returns its record."""
  record = {
    "fingerprint": setting.fingerprint(),
    "unavailable": setting.unavailable,
    **_run_info(plan, setting.dataset),
    "setting": _setting_info(setting),
  }
  if setting.unavailable:
    progress(f"{setting.key}: {setting.unavailable}")
  else:
    seeds = len(setting.seeds)
    progress(
      f"{setting.key}: training {seeds} seed{'' if seeds == 1 else 's'} for "
      f"{setting.config.train.num_steps} steps"
    )
    result = train_setting(setting, setup, progress=progress)
    record.update(result.record())
    stems = {
      "generation": setting.stem,
      **{latent_gmm_group(k): _latent_gmm_setting(setting, k).stem for k in LATENT_GMM_COMPONENTS},
    }
    for group, final in result.final_samples.items():
      folder.save_samples(out_dir, stems[group], final.samples, final.valid)
  _save(out_dir, setting, record)
  return json.loads(json.dumps(_to_json(record)))  # As it reads back: string keys.


def run_plan(
  plan: Plan,
  out_dir: str,
  classifier_config,
  *,
  data_dir: Optional[str] = None,
  progress: Callable[[str], None] = print,
  make_figures: bool = True,
  overwrite: bool = False,
) -> Dict[str, Any]:
  """Trains and measures every setting of `plan` not already saved, then writes the outputs
  from every finished setting in `out_dir` (this plan's and those saved by earlier runs).

  Raises UserError, before any training, when the run would replace saved settings made
  with other flags (see `check_folder`; `overwrite` moves them aside instead).

  Returns the results dict written to results.json.
  """
  os.makedirs(out_dir, exist_ok=True)
  check_folder(plan, out_dir, overwrite, progress)
  tables_plan, saved_records = folder_plan(plan, out_dir)
  setups = build_setups(tables_plan, out_dir, classifier_config, data_dir, progress)
  wanted = {s.key for s in plan.settings}
  records = []
  for setting in tables_plan.settings:
    if setting.key not in wanted:  # An earlier run's setting: a row of the tables only.
      record = saved_records[setting.key]
    else:
      record = load_saved(out_dir, setting)
      if record is not None:
        progress(f"{setting.key}: already measured, reused")
      else:
        record = _train_and_save(plan, setting, out_dir, setups[setting.dataset], progress)
    records.append((setting, record))
    records += latent_gmm_records(setting, record)
  results = tables.write_all(out_dir, tables_plan, records, setups)
  if make_figures:
    results["figures"] = figures.write_all(out_dir, tables_plan, records, setups)
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
      json.dump(_to_json(results), f, indent=1)
  return results
