"""The benchmark's tables: results.csv / .md / .json and calibration.csv.

results: one row per (dataset, setting) at its final checkpoint, plus a `real_data` row per
dataset (held-out real data treated as a model: its exact rates are the dataset's floor,
0.0111 on the mixtures and 0 on simple_shapes). Each metric is the mean over seeds with its
standard error (`_se`, std / sqrt(seeds)); each rate also has `_ci_low` / `_ci_high`, the 95%
Wilson interval of the count pooled over seeds (sampling error only). Each rate is named as in
`aigc_jax.evaluation.evaluators` (and `eval.json`), and `<name>_floor` is its floor, the same
estimator on the held-out real data of `evaluation.reference`. `config` is the exact config
(JSON) and `seeds` the seeds.

On simple_shapes each setting row also says why its invalid samples are invalid
(`evaluation.shapes_invalid_kinds`), pooled over seeds: `invalid_count` (invalid samples),
`invalid_<kind>_fraction` of them for each kind (mode_interpolation, rendering_artifact,
mixed: exclusive, summing to 1) and `invalid_reason_<reason>_fraction` for each of the
parser's reasons (an image may have several), each beside its `_count`.

Each setting row says whether it trained long enough, and each variant row whether it
differs from its family by more than the seeds' spread:
* `converged` ("yes" / "no"; "" when the checkpoints cannot tell), judged on
  `convergence_rate` (the support rate; the AE's reconstruction rate) by
  `convergence.check_convergence` over the per-seed learning curve: the change
  `last_doubling_change` from `convergence_reference_step` (at or below half the last step)
  to the last checkpoint, against `convergence_threshold`;
* per exact rate, `<rate>_delta_vs_family` (variant minus its family's base row on the same
  dataset, mean over seeds), its 95% Welch interval over seeds (`_delta_ci_low` / `_high`)
  and `_delta_verdict`: better / worse where the interval excludes 0, else "no measurable
  change" ("" with fewer than 2 seeds on a side). Latent GMM rows are compared with the
  family's base row too.

filtering.csv: per (dataset, filter score), the hallucinations removed at 99 / 96 / 90 / 75%
of valid samples kept (`filtering_rows`).

calibration.csv: one row per (model, estimator), a model being one seed of one setting at one
checkpoint: the exact rate it targets (`support` for estimators of generated samples,
`reconstruction` for the class flip), the estimate with its interval, and its floor.
"""

import csv
import json
import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from aigc_jax.evaluation import calibration, hallucination, shapes_invalid_kinds, statistics
from aigc_jax.evaluation.reference import Reference
from aigc_jax.evaluation.statistics import mean_and_standard_error
from aigc_jax.hallucination_benchmark import convergence, measure
from aigc_jax.hallucination_benchmark.protocols import Plan
from aigc_jax.hallucination_benchmark.settings import Setting

EXACT_RATES = ("support_hallucination_rate", "reconstruction_hallucination_rate")
MODE_METRICS = ("modes_captured", "high_quality_fraction", "reverse_kl")
FILTER_SCORES = ("realism", "confidence", "discriminator", "trajectory_variance")
# The evaluation runner's estimator (`evaluation.report`: k = 3, training-split reference);
# its calibration against the exact rate is in docs/hallucination_benchmark.md, "Calibration".
DEFAULT_ESTIMATOR = "manifold_hallucination_rate"
# The confidence of each "delta vs family" interval (Welch, over seeds).
DELTA_CONFIDENCE = 0.95
# Filtering table: hallucinations removed while keeping at least these fractions of valid.
FILTER_KEPT_TARGETS = (0.99, 0.96, 0.9, 0.75)
CALIBRATION_COLUMNS = (
  "dataset",
  "setting",
  "family",
  "seed",
  "step",
  "target",
  "exact",
  "exact_ci_low",
  "exact_ci_high",
  "estimator",
  "estimate",
  "ci_low",
  "ci_high",
  "n",
  "floor",
)


def _pooled_interval(rate_dicts: Sequence[Dict[str, float]]) -> Tuple[float, float]:
  count = sum(int(r["count"]) for r in rate_dicts)
  n = sum(int(r["n"]) for r in rate_dicts)
  low, high = hallucination.wilson_interval(count, n)
  return float(low), float(high)


def _rate_columns(prefix: str, rate_dicts: List[Dict[str, float]]) -> Dict[str, float]:
  mean, se = mean_and_standard_error([r["rate"] for r in rate_dicts])
  low, high = _pooled_interval(rate_dicts)
  return {prefix: mean, f"{prefix}_se": se, f"{prefix}_ci_low": low, f"{prefix}_ci_high": high}


def invalid_kind_columns(counts: Sequence[Dict[str, int]]) -> Dict[str, float]:
  """`invalid_count` and, per kind and per reason, its count and fraction of the invalid
  samples, pooled over the per-seed `invalid_kinds` counts (NaN fractions with none)."""
  invalid = sum(c["invalid"] for c in counts)
  row: Dict[str, float] = {"invalid_count": invalid}
  names = list(shapes_invalid_kinds.KINDS)
  names += [f"reason_{name}" for name in shapes_invalid_kinds.REASONS]
  for name in names:
    count = sum(c[name] for c in counts)
    row[f"invalid_{name}_count"] = count
    row[f"invalid_{name}_fraction"] = count / invalid if invalid else float("nan")
  return row


def final_measurements(record: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Per-seed measurements at the last checkpoint ([] when the setting did not run)."""
  checkpoints = record.get("checkpoints") or {}
  if not checkpoints:
    return []
  return checkpoints[max(checkpoints, key=int)]


def setting_row(
  setting: Setting, record: Dict[str, Any], setup: measure.DatasetSetup
) -> Dict[str, Any]:
  """The results row of one setting (final checkpoint, over seeds)."""
  reference = setup.reference
  row: Dict[str, Any] = {
    "dataset": setting.dataset,
    "setting": setting.name,
    "family": setting.family,
    "variant": os.path.basename(setting.variant),
    "status": setting.unavailable or "ok",
    "knobs": json.dumps(setting.knobs, sort_keys=True),
    "seeds": " ".join(map(str, setting.seeds)),
    "num_steps": setting.config.train.num_steps,
    "num_samples": setup.num_samples,
    "train_seconds": record.get("seconds", float("nan")),
  }
  per_seed = final_measurements(record)
  generation = [m["generation"] for m in per_seed if "generation" in m]
  reconstruction = [m["reconstruction"] for m in per_seed if "reconstruction" in m]
  if generation:
    exact = [g["exact"] for g in generation]
    row.update(
      _floored_columns(
        "support_hallucination_rate", [e["support_hallucination_rate"] for e in exact], reference
      )
    )
    for name in MODE_METRICS:
      if name in exact[0]:
        row[name], row[f"{name}_se"] = mean_and_standard_error([e[name] for e in exact])
    if "invalid_kinds" in exact[0]:
      row.update(invalid_kind_columns([e["invalid_kinds"] for e in exact]))
    for name in generation[0]["estimated"]:
      row.update(_floored_columns(name, [g["estimated"][name] for g in generation], reference))
    for score in FILTER_SCORES:
      if score in generation[0].get("filtering", {}):
        values = [g["filtering"][score]["removed_at_96"] for g in generation]
        row[f"filter_{score}_removed_at_96"], row[f"filter_{score}_removed_at_96_se"] = (
          mean_and_standard_error(values)
        )
  if reconstruction:
    row.update(
      _floored_columns(
        "reconstruction_hallucination_rate",
        [r["exact"]["reconstruction_hallucination_rate"] for r in reconstruction],
        reference,
      )
    )
    for name in reconstruction[0]["estimated"]:
      row.update(_floored_columns(name, [r["estimated"][name] for r in reconstruction], reference))
  row.update(convergence_columns(record))
  row["config"] = setting.config_json()
  return row


def _floor(reference: Reference, name: str) -> float:
  floor = reference.floors.get(name)
  return float("nan") if floor is None else float(floor.rate)


def _floored_columns(name: str, rate_dicts, reference: Reference) -> Dict[str, float]:
  """`_rate_columns` and `<name>_floor`."""
  return {**_rate_columns(name, rate_dicts), f"{name}_floor": _floor(reference, name)}


def real_data_row(dataset: str, setup: measure.DatasetSetup) -> Dict[str, Any]:
  """Held-out real data treated as a model: every rate is its floor."""
  reference = setup.reference
  row: Dict[str, Any] = {
    "dataset": dataset,
    "setting": "real_data",
    "family": "data",
    "variant": "",
    "status": "ok",
    "knobs": "{}",
    "seeds": "",
    "num_steps": 0,
    "num_samples": setup.num_samples,
  }
  for name in MODE_METRICS:
    if reference.mode_floor is not None:
      row[name] = reference.mode_floor[name]
  for name, floor in reference.floors.items():
    if name != "control_error_rate":  # The benchmark asks for no classes to be controlled.
      row.update(_floored_columns(name, [floor.as_dict()], reference))
  return row


def calibration_rows(
  setting: Setting, record: Dict[str, Any], reference: Reference
) -> List[Dict[str, Any]]:
  """Every (model, estimator) pair of one setting, over seeds and checkpoints."""
  rows = []
  for step, per_seed in sorted((record.get("checkpoints") or {}).items(), key=lambda x: int(x[0])):
    for seed, measured in zip(setting.seeds, per_seed):
      for group, target, exact_name in (
        ("generation", "support", "support_hallucination_rate"),
        ("reconstruction", "reconstruction", "reconstruction_hallucination_rate"),
      ):
        if group not in measured:
          continue
        exact = measured[group]["exact"][exact_name]
        for name, estimate in measured[group]["estimated"].items():
          rows.append(
            {
              "dataset": setting.dataset,
              "setting": setting.name,
              "family": setting.family,
              "seed": seed,
              "step": int(step),
              "target": target,
              "exact": exact["rate"],
              "exact_ci_low": exact["ci_low"],
              "exact_ci_high": exact["ci_high"],
              "estimator": name,
              "estimate": estimate["rate"],
              "ci_low": estimate["ci_low"],
              "ci_high": estimate["ci_high"],
              "n": estimate["n"],
              "floor": _floor(reference, name),
            }
          )
  return rows


def calibration_summary(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """Per (dataset, estimator), and per estimator over all datasets: Pearson, Spearman, bias,
  MAE, interval coverage of the exact rate, and the bias left after subtracting the floor."""
  groups: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
  for row in rows:
    for dataset in (row["dataset"], "all"):
      groups.setdefault((dataset, row["estimator"], row["target"]), []).append(row)
  out = []
  for (dataset, estimator, target), members in sorted(groups.items()):
    members = [m for m in members if np.isfinite(m["estimate"])]
    if len(members) < 2:
      continue
    exact = np.array([m["exact"] for m in members])
    estimate = np.array([m["estimate"] for m in members])
    stats = calibration.calibration_statistics(
      exact, estimate, [m["ci_low"] for m in members], [m["ci_high"] for m in members]
    )
    floor = np.array([m["floor"] for m in members])
    out.append(
      {
        "dataset": dataset,
        "estimator": estimator,
        "target": target,
        **stats.as_dict(),
        "mean_bias_after_floor": float(np.nanmean(estimate - floor - exact)),
        "exact_min": float(exact.min()),
        "exact_max": float(exact.max()),
      }
    )
  return out


def removed_at_kept(summary: Dict[str, Any], target: float) -> float:
  """From one model's filtering curve: the largest fraction of hallucinations removed at a
  threshold that keeps at least `target` of the valid samples (NaN when undefined)."""
  kept = np.asarray(summary["valid_kept"], np.float64)
  removed = np.asarray(summary["hallucinations_removed"], np.float64)
  ok = np.isfinite(kept) & np.isfinite(removed) & (kept >= target)
  return float(removed[ok].max()) if ok.any() else float("nan")


def filtering_rows(records) -> List[Dict[str, Any]]:
  """Per (dataset, filter score): over the final models that make both valid and
  hallucinated samples, mean and standard error of the hallucinations removed at each
  `FILTER_KEPT_TARGETS` fraction of valid samples kept."""
  groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
  for setting, record in records:
    for measured in final_measurements(record):
      for score, summary in measured.get("generation", {}).get("filtering", {}).items():
        if summary.get("removed_at_96") is not None:
          groups.setdefault((setting.dataset, score), []).append(summary)
  rows = []
  for (dataset, score), summaries in sorted(groups.items()):
    row = {"dataset": dataset, "score": score, "models": len(summaries)}
    for target in FILTER_KEPT_TARGETS:
      mean, se = mean_and_standard_error([removed_at_kept(s, target) for s in summaries])
      row[f"removed_at_kept_{target:g}"], row[f"removed_at_kept_{target:g}_se"] = mean, se
    rows.append(row)
  return rows


def _write_csv(path: str, rows: List[Dict[str, Any]], columns: Sequence[str] = ()) -> None:
  columns = list(columns) or list(dict.fromkeys(k for row in rows for k in row))
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=columns, restval="")
    writer.writeheader()
    for row in rows:
      writer.writerow({k: row.get(k, "") for k in columns})


def _fmt(value, digits: int = 3) -> str:
  if value is None or (isinstance(value, float) and not np.isfinite(value)):
    return "–"
  return f"{value:.{digits}f}"


def _fmt_mean_se(row, name, digits=3) -> str:
  if name not in row:
    return "–"
  se = row.get(f"{name}_se")
  return _fmt(row[name], digits) + (
    f" ± {_fmt(se, digits)}" if se is not None and np.isfinite(se) else ""
  )


def _fmt_rate(row, name) -> str:
  if name not in row:
    return "–"
  return (
    f"{_fmt_mean_se(row, name)} [{_fmt(row[f'{name}_ci_low'])}, {_fmt(row[f'{name}_ci_high'])}]"
  )


def _fmt_estimate(row, name) -> str:
  if name not in row:
    return "–"
  return f"{_fmt_mean_se(row, name)} (floor {_fmt(row.get(name + '_floor'))})"


def _fmt_delta(row) -> str:
  name = row.get("convergence_rate") or "support_hallucination_rate"
  verdict = row.get(f"{name}_delta_verdict")
  if verdict is None:
    return "–"  # A family's base row, or no base row to compare with.
  if not verdict:
    return "n/a (under 2 seeds)"
  return (
    f"{row[f'{name}_delta_vs_family']:+.3f} [{row[f'{name}_delta_ci_low']:+.3f}, "
    f"{row[f'{name}_delta_ci_high']:+.3f}] {verdict}"
  )


def _fmt_converged(row) -> str:
  if not row.get("converged"):
    return "n/a (too few checkpoints)"
  return f"{row['converged']} ({row['last_doubling_change']:+.3f})"


def _fmt_invalid_kinds(row) -> str:
  """ "0.120 / 0.800 / 0.080 of 412": the kinds' fractions of the invalid samples."""
  if "invalid_count" not in row:
    return "–"
  fractions = " / ".join(
    _fmt(row[f"invalid_{kind}_fraction"]) for kind in shapes_invalid_kinds.KINDS
  )
  return f"{fractions} of {row['invalid_count']}"


def results_markdown(
  plan: Plan,
  rows: List[Dict[str, Any]],
  summary: List[Dict[str, Any]],
  setups: Dict[str, measure.DatasetSetup],
  filter_table: Sequence[Dict[str, Any]] = (),
) -> str:
  lines = [
    f"# Hallucination benchmark ({plan.protocol} protocol{', quick' if plan.quick else ''})",
    "",
    "Mean ± standard error over seeds at the final checkpoint; [95% Wilson interval of "
    "the count pooled over seeds]; estimated rates with their floor (the same estimator "
    "on held-out real data). `real_data`: held-out real data treated as a model. "
    "On simple_shapes, \"invalid\": the fractions of the invalid samples (pooled over "
    "seeds) that are mode interpolation only (another region's shape, two shapes in a "
    "region), rendering artifacts only (fragment, blend, noise, stray pixels, blank), or "
    "both (`evaluation.shapes_invalid_kinds`). \"exact rate - family's\": a variant's exact "
    "rate (support; the AE's: reconstruction) minus its family's base row, mean over seeds, "
    "with the 95% Welch interval over seeds; better / worse only where the interval "
    "excludes 0. \"converged\": the exact rate moved by less than max(2 standard errors, "
    "0.01) between the last checkpoint and the one at or below half its steps (the change "
    "in brackets; `convergence.check_convergence`).",
    "",
  ]
  for dataset in plan.datasets:
    reference = setups[dataset].reference
    lines += [f"## {dataset}", ""]
    if reference.oracle_accuracy is not None:
      lines += [
        f"Classifier (features and oracle) test accuracy: {reference.oracle_accuracy:.4f}.",
        "",
      ]
    mixture = reference.spec.mixture is not None
    header = ["setting", "steps", "seeds"]
    if mixture:
      header += ["modes captured", "high-quality fraction", "reverse KL"]
    header += [
      "support hallucination rate (exact)",
      "reconstruction rate (exact)",
      "manifold k=3, test ref",
      "manifold k=3, train ref",
      "TopP",
    ]
    if not mixture:
      header += ["unrecognisable", "class flip", "invalid: mode interpolation / artifact / both"]
    header += [
      "removed at 96% kept (best filter)",
      "exact rate - family's [95% CI]",
      "converged (last doubling)",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in (r for r in rows if r["dataset"] == dataset):
      if row["status"] != "ok":
        lines.append(f"| {row['setting']} | {row['status']} |" + " |" * (len(header) - 2))
        continue
      cells = [row["setting"], str(row["num_steps"]), str(len(row["seeds"].split()))]
      if mixture:
        cells += [
          _fmt_mean_se(row, "modes_captured", 1),
          _fmt_mean_se(row, "high_quality_fraction"),
          _fmt_mean_se(row, "reverse_kl"),
        ]
      cells += [
        _fmt_rate(row, "support_hallucination_rate"),
        _fmt_rate(row, "reconstruction_hallucination_rate"),
        _fmt_estimate(row, "manifold_hallucination_rate_k3_test"),
        _fmt_estimate(row, "manifold_hallucination_rate"),
        _fmt_estimate(row, "topological_hallucination_rate_test"),
      ]
      if not mixture:
        cells += [
          _fmt_estimate(row, "unrecognisable_rate"),
          _fmt_estimate(row, "reconstruction_class_flip_rate"),
          _fmt_invalid_kinds(row),
        ]
      filters = {
        s: row[f"filter_{s}_removed_at_96"]
        for s in FILTER_SCORES
        if np.isfinite(row.get(f"filter_{s}_removed_at_96", np.nan))
      }
      best = max(filters, key=filters.get) if filters else None
      cells.append(f"{filters[best]:.3f} ({best})" if best else "–")
      cells += [_fmt_delta(row), _fmt_converged(row)]
      lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
  if summary:
    lines += [
      "## Calibration: each estimator against the exact rate",
      "",
      "Over every model (seed x setting x checkpoint). coverage: fraction of models "
      "whose 95% interval holds the exact rate; bias after floor: mean of "
      "(estimate - floor - exact).",
      "",
      "| dataset | estimator | target | models | exact range | Pearson | Spearman | "
      "mean bias | bias after floor | MAE | coverage |",
      "|" + "---|" * 11,
    ]
    for s in summary:
      lines.append(
        f"| {s['dataset']} | {s['estimator']} | {s['target']} | {s['num_models']} | "
        f"{s['exact_min']:.3f}-{s['exact_max']:.3f} | {_fmt(s['pearson'])} | "
        f"{_fmt(s['spearman'])} | {_fmt(s['mean_bias'])} | "
        f"{_fmt(s['mean_bias_after_floor'])} | {_fmt(s['mean_absolute_error'])} | "
        f"{_fmt(s['interval_coverage'])} |"
      )
    lines.append("")
  if filter_table:
    lines += [
      "## Filtering: hallucinations removed at a fraction of valid samples kept",
      "",
      "Rejection by a score (keep score >= threshold), measured exactly: over the final "
      "models that make both valid and hallucinated samples, the fraction of "
      "hallucinations removed at the threshold keeping at least the given fraction of "
      "valid samples (mean ± standard error over models). Scores: `realism` (distance "
      "to the real-data manifold, k = 3), `confidence` (the classifier's top "
      "probability), `discriminator` (the GAN's own logit), `trajectory_variance` (a "
      "diffusion model's own: minus the variance of its predicted clean sample over the last "
      "10 reverse steps, Aithal et al.). Aithal et al. (diffusion): over 95% removed at 96% "
      "kept.",
      "",
      "| dataset | score | models | "
      + " | ".join(f"{t:.0%} kept" for t in FILTER_KEPT_TARGETS)
      + " |",
      "|" + "---|" * (3 + len(FILTER_KEPT_TARGETS)),
    ]
    for f in filter_table:
      lines.append(
        f"| {f['dataset']} | {f['score']} | {f['models']} | "
        + " | ".join(_fmt_mean_se(f, f"removed_at_kept_{t:g}") for t in FILTER_KEPT_TARGETS)
        + " |"
      )
    lines.append("")
  return "\n".join(lines)


def write_all(out_dir: str, plan: Plan, records, setups) -> Dict[str, Any]:
  """Writes results.csv / .md / .json and calibration.csv; returns the results dict."""
  rows, cal_rows = [], []
  bases = {s.key: r for s, r in records if s.name == s.family and not s.variant}
  for dataset in plan.datasets:
    rows.append(real_data_row(dataset, setups[dataset]))
    for setting, record in records:
      if setting.dataset == dataset:
        rows.append(setting_row(setting, record, setups[dataset]))
        base = bases.get(family_base_key(setting))
        if base is not None and base is not record:
          rows[-1].update(difference_columns(record, base))
        cal_rows += calibration_rows(setting, record, setups[dataset].reference)
  summary = calibration_summary(cal_rows)
  filters = filtering_rows(records)
  _write_csv(os.path.join(out_dir, "results.csv"), rows)
  if filters:
    _write_csv(os.path.join(out_dir, "filtering.csv"), filters)
  _write_csv(os.path.join(out_dir, "calibration.csv"), cal_rows, CALIBRATION_COLUMNS)
  with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
    f.write(results_markdown(plan, rows, summary, setups, filters))
  results = {
    "protocol": plan.protocol,
    "quick": plan.quick,
    "rows": rows,
    "calibration": summary,
    "default_estimator": DEFAULT_ESTIMATOR,
    "filtering_table": filters,
    "floors": {
      d: {name: floor.as_dict() for name, floor in s.reference.floors.items()}
      for d, s in setups.items()
    },
    "real_data": {
      d: {
        **{
          name: s.reference.floors[name].as_dict()
          for name in EXACT_RATES
          if name in s.reference.floors
        },
        **(s.reference.mode_floor or {}),
      }
      for d, s in setups.items()
    },
    "classifier_accuracy": {d: s.reference.oracle_accuracy for d, s in setups.items()},
    "filtering": {
      f"{s.dataset}/{s.name}": [
        m["generation"]["filtering"] for m in final_measurements(r) if "generation" in m
      ]
      for s, r in records
    },
    "curves": {f"{s.dataset}/{s.name}": curve_over_steps(r) for s, r in records},
  }
  with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1, default=float)
  return results


def _seed_rate(measurement: Dict[str, Any], name: str) -> float:
  """One seed's exact rate `name` from its measurement at one checkpoint (NaN: not there)."""
  group = "generation" if name == "support_hallucination_rate" else "reconstruction"
  try:
    return float(measurement[group]["exact"][name]["rate"])
  except (KeyError, TypeError):
    return float("nan")


def primary_rate(record: Dict[str, Any]) -> str:
  """The exact rate a setting is judged by: the support rate of its samples, or the
  reconstruction rate of a model that does not generate (the AE); "" when neither exists."""
  final = final_measurements(record)
  for name in EXACT_RATES:
    if any(np.isfinite(_seed_rate(m, name)) for m in final):
      return name
  return ""


def learning_curve(record: Dict[str, Any], name: str) -> Tuple[List[int], np.ndarray]:
  """(steps [P], values [S, P]): the exact rate `name` of each seed at each checkpoint where
  some seed has it (NaN where a seed does not)."""
  steps, columns = [], []
  for step, per_seed in sorted((record.get("checkpoints") or {}).items(), key=lambda x: int(x[0])):
    values = [_seed_rate(m, name) for m in per_seed]
    if any(np.isfinite(values)):
      steps.append(int(step))
      columns.append(values)
  if not columns:
    return [], np.zeros((0, 0))
  width = max(len(c) for c in columns)
  return steps, np.array([c + [np.nan] * (width - len(c)) for c in columns]).T


def convergence_columns(record: Dict[str, Any]) -> Dict[str, Any]:
  """`converged` ("yes" / "no"; "" when the curve cannot tell: under 2 points, or none at or
  below half the last step), the rate it was judged on, and the rule's numbers
  (`convergence.check_convergence` on the per-seed learning curve of `primary_rate`)."""
  name = primary_rate(record)
  out: Dict[str, Any] = {"converged": "", "convergence_rate": name}
  steps, values = learning_curve(record, name) if name else ([], None)
  if len(steps) < 2 or 2 * steps[0] > steps[-1]:
    return out
  check = convergence.check_convergence(steps, values)
  out.update(
    converged="yes" if check.converged else "no",
    convergence_reference_step=check.reference_step,
    last_doubling_change=check.last_mean - check.reference_mean,
    convergence_threshold=check.threshold,
  )
  return out


def family_base_key(setting: Setting) -> str:
  """The key of the row a setting is compared with: its family's base setting on the same
  dataset ("gan_hinge" -> "gan"; a latent GMM row "vae_beta+gmm10" -> "vae")."""
  return f"{setting.dataset}/{setting.family}"


def difference_columns(variant: Dict[str, Any], family: Dict[str, Any]) -> Dict[str, Any]:
  """Per exact rate both records have: `<rate>_delta_vs_family` (mean over seeds of the
  variant minus the family's), its 95% Welch interval (`_delta_ci_low` / `_high`, unequal
  variances, `statistics.welch_difference_interval`) and `_delta_verdict` (better / worse
  where the interval excludes 0, else "no measurable change"; "" with under 2 seeds a side)."""
  out: Dict[str, Any] = {}
  for name in EXACT_RATES:
    a = [_seed_rate(m, name) for m in final_measurements(variant)]
    b = [_seed_rate(m, name) for m in final_measurements(family)]
    if not (np.isfinite(a).any() and np.isfinite(b).any()):
      continue
    try:
      interval = statistics.welch_difference_interval(a, b, DELTA_CONFIDENCE)
    except ValueError:  # Under 2 finite seeds on a side: no spread to judge by.
      out[f"{name}_delta_verdict"] = ""
      continue
    out[f"{name}_delta_vs_family"] = interval.difference
    out[f"{name}_delta_ci_low"] = interval.low
    out[f"{name}_delta_ci_high"] = interval.high
    out[f"{name}_delta_verdict"] = statistics.difference_verdict(interval)
  return out


def curve_over_steps(record: Dict[str, Any]) -> Dict[str, Any]:
  """Mean and standard error over seeds of the mode metrics and the exact rate per checkpoint."""
  out: Dict[str, Any] = {"steps": []}
  for step, per_seed in sorted((record.get("checkpoints") or {}).items(), key=lambda x: int(x[0])):
    exact = [m["generation"]["exact"] for m in per_seed if "generation" in m]
    if not exact:
      continue
    out["steps"].append(int(step))
    for name in MODE_METRICS + ("support_hallucination_rate",):
      if name in exact[0]:
        values = [e[name]["rate"] if isinstance(e[name], dict) else e[name] for e in exact]
        mean, se = mean_and_standard_error(values)
        out.setdefault(name, []).append(mean)
        out.setdefault(f"{name}_se", []).append(se)
  return out
