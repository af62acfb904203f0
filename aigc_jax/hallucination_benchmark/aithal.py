"""Aithal et al. 2024's toy diffusion protocol ("Understanding Hallucinations in Diffusion
Models through Mode Interpolation", NeurIPS 2024; code: locuslab/diffusion-model-hallucination,
`gaussian_experiments/`), as read in the authors' code.

Data (`training_points`):
* `gaussian1d`: modes at 1, 2, 3, std 0.05, equal counts (example i is drawn from mode i mod 3),
  20,000 training samples;
* `grid25`: modes at (2i, 2j), i, j in -2..2, std 0.05, everything divided by
  sqrt(0.05^2 + 8) (mode spacing 0.707, per-mode std 0.0177), 100,000 training samples.
The authors draw with an unseeded generator; here a set of n points is the first n of one
fixed draw (nested sets, balanced at every size).

Model and training: the diffusion family with the config of `experiments/configs/
aithal_toy.py` (T = 1000, linear betas 0.001 .. 0.2, fixed-large variance, no clipping, the
authors' MLP with its three temporal layers sharing one set of weights, Adam 1e-3, batch
10,000, no EMA), trained by `MultiSeedTrainer` (all seeds in one compiled call). Differences
from the authors: batches are drawn with replacement (theirs: contiguous slices of the
training set, in order); flax's default initialisers (theirs: Xavier-uniform).

Measurement, on `num_samples` samples of 1000-step ancestral sampling per seed, from one fixed
key for every seed and checkpoint:
* `support_hallucination_rate`: samples farther than 3 standard deviations from every mode
  (the project's support rule, `GaussianMixture.support_check`);
* `between_modes_rate`: those of them inside the box spanned by the modes, i.e. between modes
  (mode interpolation, what the paper counts; the rest lie outside the outer modes);
* the filters: `variance` (Aithal et al.'s: minus the variance of the predicted clean sample
  over the last 10 reverse steps, `filtering.trajectory_variance_score`) and `realism` (the
  distance to the data: the k-NN realism score of a sample among the training points), each
  read at the threshold keeping 96% of in-support samples (`evaluators.filtering_summary`).
The discriminator and classifier-confidence filters of the standard protocol do not exist for
a diffusion model on points (no discriminator, no class oracle).

Curves (each a unit of work saved under `settings/` when finished and reused by a rerun):
* `steps_<dataset>`: the rate at log-spaced checkpoints along training (at least 8), then, on
  the final model, the rate against the number of sampling steps and the filter curves;
* `sizes_<dataset>_<n>`: a model trained on n training points for `size_steps` steps.
"""

import dataclasses
import glob
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np

from aigc_jax.data.gaussian_mixtures import GaussianMixture
from aigc_jax.evaluation import evaluators, filtering, hallucination, statistics
from aigc_jax.hallucination_benchmark import convergence, folder
from aigc_jax.training import diffusion, multi_seed
from aigc_jax.training.family import build_family
from aigc_jax.training.optimizers import build_optimizer

GRID_SCALE = float(np.sqrt(0.05**2 + 8.0))
MIXTURES = {
  "gaussian1d": GaussianMixture("aithal_gaussian1d", np.array([[1.0], [2.0], [3.0]]), 0.05),
  "grid25": GaussianMixture(
    "aithal_grid25",
    np.array([[2.0 * i, 2.0 * j] for i in range(-2, 3) for j in range(-2, 3)]) / GRID_SCALE,
    0.05 / GRID_SCALE,
  ),
}
DATASETS = tuple(MIXTURES)
PAPER_TRAIN_SIZE = {"gaussian1d": 20_000, "grid25": 100_000}
PAPER_STEPS = {"gaussian1d": 20_000, "grid25": 100_000}  # 10,000 epochs at batch 10,000.
MAX_POINTS = 100_000  # The fixed draw that every training set is a prefix of.
FILTER_STEPS = 10  # Reverse steps whose predicted clean samples the variance filter reads.
SAMPLE_KEY = 20_240_610
MIN_CHECKPOINTS = 8
REALISM_REFERENCE = 10_000  # Training points the realism score's k-NN balls are built on.
# Stored per unit for the figures: the first samples of seed 0 (4 decimals).
STORED_SAMPLES = 2_000
# The paper's claim (abstract of arXiv 2406.09358), on its synthetic datasets.
PAPER_FILTER = {"hallucinations_removed": 0.95, "in_support_kept": 0.96}
VERSION = 1


def training_points(dataset: str, size: int) -> np.ndarray:
  """The first `size` points `[size, D]` float32 of the protocol's fixed draw (module
  docstring): example i from mode i mod K, normal noise by Box-Muller from PCG64's raw words
  (a stream numpy keeps stable), seeded by the dataset's name."""
  mixture = MIXTURES[dataset]
  if not 1 <= size <= MAX_POINTS:
    raise ValueError(f"a training set holds 1 .. {MAX_POINTS} points, got {size}")
  seed = int.from_bytes(hashlib.sha256(f"aithal/{dataset}".encode()).digest()[:8], "little")
  words = np.random.PCG64(seed).random_raw(2 * MAX_POINTS).reshape(MAX_POINTS, 2)[:size]
  uniforms = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
  radius = np.sqrt(-2.0 * np.log(uniforms[:, 0]))
  angle = 2.0 * np.pi * uniforms[:, 1]
  normal = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
  modes = np.arange(size) % mixture.num_modes
  points = mixture.means[modes] + mixture.std * normal[:, : mixture.dimension]
  return points.astype(np.float32)


def between_modes(dataset: str, samples: np.ndarray) -> np.ndarray:
  """[N] bool: outside the support but inside the box the modes span (between modes)."""
  mixture = MIXTURES[dataset]
  samples = np.asarray(samples, np.float64)
  inside = np.all(
    (samples >= mixture.means.min(axis=0)) & (samples <= mixture.means.max(axis=0)), axis=1
  )
  return inside & ~np.asarray(mixture.support_check(samples))


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one `--protocol aithal` run does (the defaults: the authors' budget)."""

  datasets: Tuple[str, ...] = DATASETS
  steps: Dict[str, int] = dataclasses.field(default_factory=lambda: dict(PAPER_STEPS))
  seeds: int = 3
  num_samples: int = 10_000
  batch_size: int = 10_000
  sampling_steps: Tuple[int, ...] = (10, 25, 50, 100, 250, 500, 1000)
  sizes: Tuple[int, ...] = (1_000, 5_000, 20_000, 100_000)
  size_steps: Optional[Dict[str, int]] = None  # None: the dataset's `steps`.
  quick: bool = False

  def unit_settings(self, dataset: str, size: Optional[int]) -> Dict[str, Any]:
    """What a unit's numbers depend on (a saved unit with other settings is not reused)."""
    steps = self.steps[dataset] if size is None else (self.size_steps or self.steps)[dataset]
    return {
      "protocol": "aithal",
      "version": VERSION,
      "dataset": dataset,
      "train_size": PAPER_TRAIN_SIZE[dataset] if size is None else size,
      "steps": steps,
      "seeds": self.seeds,
      "num_samples": self.num_samples,
      "batch_size": self.batch_size,
      "sampling_steps": list(self.sampling_steps) if size is None else [],
      "quick": self.quick,
    }


QUICK = {"steps": 40, "seeds": 2, "num_samples": 300, "batch_size": 500, "sizes": (1_000,)}


def make_plan(
  *,
  quick: bool = False,
  steps: Optional[int] = None,
  size_steps: Optional[int] = None,
  seeds: Optional[int] = None,
  num_samples: Optional[int] = None,
  sizes: Optional[Sequence[int]] = None,
  only: Sequence[str] = (),
) -> Plan:
  """The authors' budget, or the quick one (CI: 40 steps at batch 500, 2 seeds, 300 samples),
  with `steps` (every dataset), `size_steps` (the training-points curve's models), `seeds`
  and `only` (datasets) overriding it. 0 is a value, never "the default"."""
  unknown = [d for d in only if d not in DATASETS]
  if unknown:
    raise ValueError(f"--only names {unknown[0]!r}; the aithal protocol's datasets are {DATASETS}")
  datasets = tuple(d for d in DATASETS if not only or d in only)
  fields: Dict[str, Any] = {"datasets": datasets}
  if quick:
    fields.update(
      steps={d: QUICK["steps"] for d in DATASETS},
      seeds=QUICK["seeds"],
      num_samples=QUICK["num_samples"],
      batch_size=QUICK["batch_size"],
      sizes=QUICK["sizes"],
      quick=True,
    )
  if steps is not None:
    fields["steps"] = {d: int(steps) for d in DATASETS}
  if size_steps is not None:
    fields["size_steps"] = {d: int(size_steps) for d in DATASETS}
  if seeds is not None:
    fields["seeds"] = int(seeds)
  if num_samples is not None:
    fields["num_samples"] = int(num_samples)
  if sizes is not None:
    if not all(1 <= int(n) <= MAX_POINTS for n in sizes):
      raise ValueError(f"training-set sizes must be in 1 .. {MAX_POINTS:,}, got {list(sizes)}")
    fields["sizes"] = tuple(int(n) for n in sizes)
  return Plan(**fields)


def unit_stems(plan: Plan) -> List[Tuple[str, str, Optional[int]]]:
  """(stem, dataset, size or None) of every unit, in run order."""
  out = []
  for dataset in plan.datasets:
    out.append((f"aithal_steps_{dataset}", dataset, None))
    out += [
      (f"aithal_sizes_{dataset}_{n}", dataset, n)
      for n in plan.sizes
      if n != PAPER_TRAIN_SIZE[dataset]  # That point is the steps unit's final model.
    ]
  return out


def _rate(flags: np.ndarray) -> Dict[str, float]:
  return hallucination.rate_from_flags(np.asarray(flags)).as_dict()


def measure_samples(
  dataset: str, samples: np.ndarray, x0_hats: Optional[np.ndarray], reference: np.ndarray
) -> Dict[str, Any]:
  """The rates of one seed's samples `[N, D]` and, with `x0_hats` `[FILTER_STEPS, N, D]`, the
  filters (module docstring). `reference`: training points for the realism score."""
  mixture = MIXTURES[dataset]
  _, flags = hallucination.support_hallucination_rate(samples, mixture.support_check)
  flags = np.asarray(flags)
  out = {
    "support_hallucination_rate": _rate(flags),
    "between_modes_rate": _rate(between_modes(dataset, samples)),
  }
  if x0_hats is not None:
    scores = {
      "variance": filtering.trajectory_variance_score(x0_hats),
      "realism": filtering.manifold_realism_score(reference, samples, k=evaluators.REALISM_K),
    }
    out["filters"] = evaluators.filtering_summary(scores, ~flags)
  return out


def _mean_over_seeds(per_seed: List[Dict[str, Any]], name: str) -> Dict[str, float]:
  mean, se = statistics.mean_and_standard_error([m[name]["rate"] for m in per_seed])
  return {"mean": mean, "standard_error": se}


def train_and_measure(
  plan: Plan,
  dataset: str,
  size: Optional[int],
  config: ml_collections.ConfigDict,
  log: Callable[[str], None] = print,
) -> Dict[str, Any]:
  """One unit: trains `plan.seeds` seeds of `config` on the dataset's first `size` points
  (None: the paper's size) and measures them (module docstring). Returns its JSON record."""
  settings = plan.unit_settings(dataset, size)
  mixture = MIXTURES[dataset]
  points = training_points(dataset, settings["train_size"])
  shape = (mixture.dimension,)
  family = build_family(
    config.model,
    shape,
    num_classes=1,
    optimizer=build_optimizer(config.optimizer, settings["steps"]),
  )
  trainer = multi_seed.MultiSeedTrainer(
    family,
    points,
    np.zeros(len(points), np.int32),
    batch_size=plan.batch_size,
    seeds=range(plan.seeds),
  )
  reference = points[np.random.RandomState(0).permutation(len(points))[:REALISM_REFERENCE]]
  key = jax.random.PRNGKey(SAMPLE_KEY)
  sampler = diffusion.make_sampler(config.model, shape)
  checkpoints = (
    convergence.doubling_checkpoints(settings["steps"], MIN_CHECKPOINTS)
    if size is None
    else (settings["steps"],)
  )
  states, done, curve, losses = trainer.init(), 0, [], []
  start = time.time()
  for step in checkpoints:
    states, metrics = trainer.run(states, step - done)
    losses.append(np.asarray(metrics["loss"]).mean(axis=0))
    done = step
    per_seed = []
    for s in range(plan.seeds):
      samples, x0_hats = sampler(
        multi_seed.select_seed(states, s), key, plan.num_samples, FILTER_STEPS
      )
      per_seed.append(measure_samples(dataset, np.asarray(samples), np.asarray(x0_hats), reference))
      if s == 0:
        stored = np.asarray(samples)[:STORED_SAMPLES]  # Seed 0's, for the figures.
    point = {
      "step": step,
      "seconds": time.time() - start,
      "loss": float(np.mean(losses[-1][-min(100, len(losses[-1])) :])),
      "per_seed": per_seed,
      "support_hallucination_rate": _mean_over_seeds(per_seed, "support_hallucination_rate"),
      "between_modes_rate": _mean_over_seeds(per_seed, "between_modes_rate"),
    }
    for name in ("variance", "realism"):
      point[f"removed_at_96_{name}"] = statistics.mean_and_standard_error(
        [m["filters"][name]["removed_at_96"] for m in per_seed]
      )
    curve.append(point)
    log(
      f"  {dataset} n={settings['train_size']} step {step}: support hallucination rate "
      f"{point['support_hallucination_rate']['mean']:.4f}, variance filter removes "
      f"{point['removed_at_96_variance'][0]:.3f} at 96% kept ({time.time() - start:.0f} s)"
    )
  record = {
    "settings": settings,
    "curve": curve,
    "samples": np.round(stored, 4).tolist(),
  }
  if size is None:
    record["sampling_steps_curve"] = _sampling_steps_curve(
      plan, dataset, config, states, key, reference, log
    )
  record["seconds"] = time.time() - start
  return record


def _sampling_steps_curve(plan, dataset, config, states, key, reference, log):
  out = []
  for num_steps in plan.sampling_steps:
    model = config.model.copy_and_resolve_references()
    model.diffusion.sampling_steps = int(num_steps)
    sampler = diffusion.make_sampler(model, (MIXTURES[dataset].dimension,))
    per_seed = [
      measure_samples(
        dataset,
        np.asarray(sampler(multi_seed.select_seed(states, s), key, plan.num_samples)[0]),
        None,
        reference,
      )
      for s in range(plan.seeds)
    ]
    out.append(
      {
        "sampling_steps": int(num_steps),
        "support_hallucination_rate": _mean_over_seeds(per_seed, "support_hallucination_rate"),
        "between_modes_rate": _mean_over_seeds(per_seed, "between_modes_rate"),
      }
    )
    log(
      f"  {dataset} {num_steps} sampling steps: support hallucination rate "
      f"{out[-1]['support_hallucination_rate']['mean']:.4f}"
    )
  return out


def unit_file(out_dir: str, stem: str) -> str:
  return folder.setting_file(out_dir, stem, "json")


def saved_unit(out_dir: str, stem: str) -> Optional[Dict[str, Any]]:
  path = unit_file(out_dir, stem)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def conflicts(plan: Plan, out_dir: str) -> List[Tuple[str, str]]:
  """(stem, what differs) of each saved unit this plan would replace with other settings."""
  out = []
  for stem, dataset, size in unit_stems(plan):
    saved = saved_unit(out_dir, stem)
    wanted = plan.unit_settings(dataset, size)
    if saved is not None and saved["settings"] != wanted:
      differences = [
        f"{k} {saved['settings'].get(k)!r} -> {v!r}"
        for k, v in wanted.items()
        if saved["settings"].get(k) != v
      ]
      out.append((stem, ", ".join(differences)))
  return out


def run_plan(
  plan: Plan,
  out_dir: str,
  get_config: Callable[[str], ml_collections.ConfigDict],
  *,
  overwrite: bool = False,
  command: str = "",
  log: Callable[[str], None] = print,
) -> Dict[str, Dict[str, Any]]:
  """Runs every unit not already saved in `out_dir` with the same settings, saves each as it
  finishes, and returns {stem: record} of all of them. A saved unit with other settings is
  refused (ValueError naming it) unless `overwrite`, which moves it aside first."""
  from aigc_jax.errors import UserError  # pylint: disable=import-outside-toplevel

  found = conflicts(plan, out_dir)
  if found and not overwrite:
    stem, difference = found[0]
    raise UserError(
      f"{out_dir} holds {len(found)} unit(s) of this protocol made with other settings "
      f"({stem}: {difference}); pass another --out, the same flags as before, or --overwrite "
      "to move them aside."
    )
  if found:
    folder.move_aside(out_dir, [stem for stem, _ in found])
  os.makedirs(os.path.join(out_dir, folder.SETTINGS_DIR), exist_ok=True)
  records = {}
  for stem, dataset, size in unit_stems(plan):
    saved = saved_unit(out_dir, stem)
    if saved is not None:
      log(f"{stem}: finished earlier, reused")
      records[stem] = saved
      continue
    log(f"{stem}: training")
    record = train_and_measure(plan, dataset, size, get_config(dataset), log)
    record["command"] = command
    tmp = unit_file(out_dir, stem) + ".tmp"
    with open(tmp, "w") as f:
      json.dump(record, f)
    os.replace(tmp, unit_file(out_dir, stem))  # Whole or absent, never half written.
    records[stem] = record
  return records


def saved_units(out_dir: str) -> Dict[str, Dict[str, Any]]:
  """{stem: record} of every finished unit in `out_dir` (of any run of this protocol there)."""
  pattern = os.path.join(out_dir, folder.SETTINGS_DIR, "aithal_*.json")
  return {
    os.path.basename(path)[: -len(".json")]: saved_unit(out_dir, os.path.basename(path)[:-5])
    for path in sorted(glob.glob(pattern))
  }


def datasets_of(records) -> Tuple[str, ...]:
  """The datasets with a finished steps unit, in the protocol's order."""
  return tuple(d for d in DATASETS if f"aithal_steps_{d}" in records)


def table_rows(records: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
  """One row per dataset: the final model's rates and filters, the budget, convergence."""
  rows = []
  for dataset in datasets_of(records):
    record = records[f"aithal_steps_{dataset}"]
    final = record["curve"][-1]
    per_seed = [
      [m["support_hallucination_rate"]["rate"] for m in point["per_seed"]]
      for point in record["curve"]
    ]
    check = convergence.check_convergence(
      [p["step"] for p in record["curve"]], np.asarray(per_seed).T
    )
    rows.append(
      {
        "dataset": dataset,
        "steps": final["step"],
        "paper_steps": PAPER_STEPS[dataset],
        "train_size": record["settings"]["train_size"],
        "batch_size": record["settings"]["batch_size"],
        "seeds": record["settings"]["seeds"],
        "num_samples": record["settings"]["num_samples"],
        "support_hallucination_rate": final["support_hallucination_rate"],
        "between_modes_rate": final["between_modes_rate"],
        "removed_at_96_variance": final["removed_at_96_variance"],
        "removed_at_96_realism": final["removed_at_96_realism"],
        "seconds": record["seconds"],
        "converged": bool(check.converged),
        "last_doubling_change": float(check.last_mean - check.reference_mean),
      }
    )
  return rows


def sizes_curve(dataset: str, records) -> List[Tuple[int, Dict[str, float]]]:
  """(training points, support rate over seeds) of the training-points curve's models, in
  increasing size, with the steps unit's checkpoint at their step for the paper's size."""
  sizes = [r for s, r in records.items() if s.startswith(f"aithal_sizes_{dataset}_")]
  out = [(r["settings"]["train_size"], r["curve"][-1]["support_hallucination_rate"]) for r in sizes]
  steps = {r["settings"]["steps"] for r in sizes}
  full = records.get(f"aithal_steps_{dataset}")
  if full is not None and len(steps) == 1:
    out += [
      (full["settings"]["train_size"], p["support_hallucination_rate"])
      for p in full["curve"]
      if p["step"] in steps
    ]
  return sorted(out, key=lambda item: item[0])


def numbers_for_json(records) -> Dict[str, Any]:
  return {
    "paper": {"filter": PAPER_FILTER, "steps": PAPER_STEPS, "train_size": PAPER_TRAIN_SIZE},
    "rows": table_rows(records),
    "sizes": {d: sizes_curve(d, records) for d in datasets_of(records)},
    "commands": sorted({r.get("command", "") for r in records.values()}),
  }


def _fmt(mean_se: Sequence[float]) -> str:
  mean, se = mean_se
  if mean is None or not np.isfinite(mean):
    return "n/a"
  return f"{mean:.3f}" if not np.isfinite(se) else f"{mean:.3f} ± {se:.3f}"


def results_markdown(records) -> str:
  """The reproduction's table (ours beside the paper's) as markdown."""
  lines = [
    "# Aithal et al. 2024's toy diffusion protocol",
    "",
    "Made by:",
    "",
    *[f"    {c}" for c in sorted({r.get("command", "") for r in records.values()})],
    "",
    "Rates are means over seeds ± their standard error, on each seed's samples of 1000-step "
    "ancestral sampling; the filters' columns are the fraction of hallucinations removed at "
    "the threshold keeping 96% of in-support samples (mean over seeds). Converged: the rate "
    "changed by less than max(2 standard errors, 0.01) over the last doubling of training "
    "(`convergence.check_convergence`; the change in brackets).",
    "",
    "| dataset | steps (paper's) | training points | batch | seeds x samples | "
    "support hallucination rate | between modes | variance filter removes | "
    "realism filter removes | converged | wall time |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for row in table_rows(records):
    rate, between = row["support_hallucination_rate"], row["between_modes_rate"]
    lines.append(
      f"| {row['dataset']} | {row['steps']:,} ({row['paper_steps']:,}) | "
      f"{row['train_size']:,} | {row['batch_size']:,} | "
      f"{row['seeds']} x {row['num_samples']:,} | "
      f"{_fmt((rate['mean'], rate['standard_error']))} | "
      f"{_fmt((between['mean'], between['standard_error']))} | "
      f"{_fmt(row['removed_at_96_variance'])} | {_fmt(row['removed_at_96_realism'])} | "
      f"{'yes' if row['converged'] else 'no'} ({row['last_doubling_change']:+.3f}) | "
      f"{row['seconds'] / 60:.1f} min |"
    )
  lines += [
    "| paper (abstract, arXiv 2406.09358) | 20,000 (1-D), 100,000 (2-D) | 20,000 / 100,000 | "
    f"10,000 | | | | over {PAPER_FILTER['hallucinations_removed']:.0%} at "
    f"{PAPER_FILTER['in_support_kept']:.0%} kept | | | |",
    "",
  ]
  return "\n".join(lines)


def write_outputs(out_dir: str) -> List[str]:
  """results.md, results.json and the figures of every finished unit in `out_dir`; returns
  the paths."""
  from aigc_jax.hallucination_benchmark import figures  # pylint: disable=import-outside-toplevel

  records = saved_units(out_dir)
  paths = [os.path.join(out_dir, "results.md"), os.path.join(out_dir, "results.json")]
  with open(paths[0], "w") as f:
    f.write(results_markdown(records))
  with open(paths[1], "w") as f:
    json.dump(numbers_for_json(records), f, indent=1)
  datasets = datasets_of(records)
  sizes = {d: sizes_curve(d, records) for d in datasets}
  return paths + figures.aithal_figures(out_dir, datasets, records, sizes, MIXTURES)
