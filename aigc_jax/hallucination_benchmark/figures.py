"""The benchmark's figures (matplotlib, Agg backend), written under `out_dir/figures/`:

* `samples_<dataset>.png` (mixtures): seed 0's final samples of each setting over the modes
  (3-standard-deviation circles); valid samples blue, hallucinated ones red crosses.
* `samples_simple_shapes.png`: 8x8 grids of seed 0's final samples per setting, the
  hallucinated ones outlined in red.
* `calibration.png`: every estimate against the exact rate it targets, one panel per
  estimator, the diagonal for reference.
* `filtering.png`: fraction of hallucinations removed against fraction of valid samples kept,
  per dataset and score (mean over the final models), with Aithal et al.'s operating point.
* `learning_curves.png`: per dataset, each setting's exact rate (mean over seeds, standard
  error band) and, on the mixtures, its high-quality fraction against training steps
  (log scale); rows the convergence rule did not pass are labelled "(unconverged)".
* `pacgan_curve.png` (pacgan protocol): modes captured and high-quality fraction against steps.
"""

import os
from typing import Any, Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from aigc_jax.evaluation import statistics  # pylint: disable=wrong-import-position
from aigc_jax.hallucination_benchmark import folder, tables  # pylint: disable=wrong-import-position

GRID_SIDE = 8
AITHAL_POINT = (0.96, 0.95)  # Valid kept, hallucinations removed (Aithal et al. 2024).
FRACTION_LIMITS = (-0.02, 1.02)  # Axes of fractions, padded so that 0 and 1 stay visible.


def _save(fig, path: str) -> str:
  """Lays `fig` out, writes it to `path` (110 dpi PNG), closes it; returns `path`."""
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _panels(count: int, columns: int = 4, size: float = 3.0):
  rows = max(1, -(-count // columns))
  columns = min(columns, max(count, 1))
  fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
  for ax in axes.ravel()[count:]:
    ax.axis("off")
  return fig, axes.ravel()


def points_figure(path, dataset, mixture, items) -> str:
  fig, axes = _panels(len(items))
  for ax, (name, (samples, valid)) in zip(axes, items):
    for mean in mixture.means:
      ax.add_patch(plt.Circle(mean, 3 * mixture.std, fill=False, color="0.6", lw=0.8))
    ax.scatter(samples[valid, 0], samples[valid, 1], s=2, c="tab:blue", alpha=0.5)
    ax.scatter(samples[~valid, 0], samples[~valid, 1], s=6, c="tab:red", marker="x", lw=0.6)
    ax.set_title(f"{name}: {np.mean(~valid):.3f} hallucinated", fontsize=8)
    limit = 1.6 * np.abs(mixture.means).max() + 0.5
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)
  fig.suptitle(f"{dataset}: samples (blue valid, red crosses hallucinated)", fontsize=9)
  return _save(fig, path)


def outlined_grid(images: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """RGB grid [side*(H+2), side*(W+2), 3] of up to 64 images, each framed by a 1-pixel
  border: red for hallucinated, grey for valid."""
  images = images[: GRID_SIDE * GRID_SIDE, ..., 0]
  height, width = images.shape[1:3]
  cell_h, cell_w = height + 2, width + 2
  grid = np.ones((GRID_SIDE * cell_h, GRID_SIDE * cell_w, 3), np.float32)
  for index, (image, ok) in enumerate(zip(images, valid)):
    top, left = (index // GRID_SIDE) * cell_h, (index % GRID_SIDE) * cell_w
    frame = np.array([0.7, 0.7, 0.7] if ok else [1.0, 0.0, 0.0], np.float32)
    grid[top : top + cell_h, left : left + cell_w] = frame
    grid[top + 1 : top + 1 + height, left + 1 : left + 1 + width] = image[..., None]
  return grid


def shapes_figure(path, items) -> str:
  fig, axes = _panels(len(items), columns=3, size=3.6)
  for ax, (name, (samples, valid)) in zip(axes, items):
    ax.imshow(outlined_grid(samples, valid), interpolation="nearest")
    ax.set_title(f"{name}: {np.mean(~valid):.3f} hallucinated (red)", fontsize=8)
    ax.axis("off")
  return _save(fig, path)


def calibration_figure(path, rows: List[Dict[str, Any]]) -> str:
  estimators = list(dict.fromkeys(r["estimator"] for r in rows))
  fig, axes = _panels(len(estimators), columns=4, size=3.0)
  datasets = list(dict.fromkeys(r["dataset"] for r in rows))
  colours = dict(zip(datasets, ["tab:blue", "tab:orange", "tab:green", "tab:purple"]))
  for ax, name in zip(axes, estimators):
    for dataset in datasets:
      mine = [r for r in rows if r["estimator"] == name and r["dataset"] == dataset]
      if mine:
        ax.scatter(
          [r["exact"] for r in mine],
          [r["estimate"] for r in mine],
          s=8,
          c=colours[dataset],
          label=dataset,
          alpha=0.7,
        )
    ax.plot([0, 1], [0, 1], color="0.5", lw=0.8)
    ax.set_xlim(*FRACTION_LIMITS)
    ax.set_ylim(*FRACTION_LIMITS)
    target = next(r["target"] for r in rows if r["estimator"] == name)
    ax.set_title(name, fontsize=8)
    ax.set_xlabel(f"exact {target} rate", fontsize=7)
    ax.set_ylabel("estimate", fontsize=7)
    ax.tick_params(labelsize=6)
  axes[0].legend(fontsize=6)
  return _save(fig, path)


def filtering_figure(path, plan, records) -> str:
  fig = filtering_plot(plan, records)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def filtering_plot(plan, records):
  """The filtering figure (one panel per dataset), not yet saved."""
  fig, axes = _panels(len(plan.datasets), columns=3, size=3.6)
  for ax, dataset in zip(axes, plan.datasets):
    curves: Dict[str, List] = {}
    for setting, record in records:
      if setting.dataset != dataset:
        continue
      for measured in tables.final_measurements(record):
        for score, summary in measured.get("generation", {}).get("filtering", {}).items():
          if np.isfinite(np.asarray(summary["hallucinations_removed"], np.float64)).all():
            curves.setdefault(score, []).append(summary)
    _filter_panel(ax, curves, dataset, "models", "valid", "Aithal et al. (diffusion)")
  fig.tight_layout()
  return fig


def _filter_panel(ax, curves: Dict[str, List], title: str, unit: str, kept_what: str, paper: str):
  """Each score's filtering curve, the mean of its summaries (`evaluators.filtering_summary`
  entries) over `unit`s, with Aithal et al.'s operating point."""
  for score, summaries in sorted(curves.items()):
    kept = np.mean([s["valid_kept"] for s in summaries], axis=0)
    removed = np.mean([s["hallucinations_removed"] for s in summaries], axis=0)
    ax.plot(kept, removed, label=f"{score} ({len(summaries)} {unit})", lw=1.2)
  ax.scatter(*AITHAL_POINT, marker="*", c="k", s=40, label=paper)
  # Padded: curves often run along 0 or 1, where an unpadded frame would hide them.
  ax.set_xlim(*FRACTION_LIMITS)
  ax.set_ylim(*FRACTION_LIMITS)
  ax.set_xlabel(f"fraction of {kept_what} samples kept", fontsize=7)
  ax.set_ylabel("fraction of hallucinations removed", fontsize=7)
  ax.set_title(title, fontsize=8)
  ax.legend(fontsize=6)
  ax.tick_params(labelsize=6)


def pacgan_figure(path, plan, records) -> str:
  fig, axes = plt.subplots(
    len(plan.datasets), 2, figsize=(8, 3 * len(plan.datasets)), squeeze=False
  )
  for row, dataset in enumerate(plan.datasets):
    for setting, record in records:
      if setting.dataset != dataset:
        continue
      curve = tables.curve_over_steps(record)
      for col, name in enumerate(("modes_captured", "high_quality_fraction")):
        if name in curve:
          mean, se = np.array(curve[name]), np.nan_to_num(np.array(curve[f"{name}_se"]))
          axes[row, col].plot(curve["steps"], mean, label=setting.name)
          axes[row, col].fill_between(curve["steps"], mean - se, mean + se, alpha=0.2)
    for col, name in enumerate(("modes captured", "high-quality fraction")):
      axes[row, col].set_title(f"{dataset}: {name}", fontsize=8)
      if name == "high-quality fraction":
        axes[row, col].set_ylim(*FRACTION_LIMITS)
      axes[row, col].set_xlabel("step", fontsize=7)
      axes[row, col].legend(fontsize=6)
      axes[row, col].tick_params(labelsize=6)
  return _save(fig, path)


def learning_curves_figure(path, plan, records) -> str:
  return _save(learning_curves_plot(plan, records), path)


def learning_curves_plot(plan, records):
  """Per dataset: each setting's exact rate (`tables.primary_rate`: support; the AE's
  reconstruction) against training steps, mean over seeds with a standard-error band, and on
  the mixtures the high-quality fraction beside it; "(unconverged)" marks the rows the rule
  did not pass."""
  fig, axes = plt.subplots(
    len(plan.datasets), 2, figsize=(9, 3.2 * len(plan.datasets)), squeeze=False
  )
  for row, dataset in enumerate(plan.datasets):
    for setting, record in records:
      name = tables.primary_rate(record) if setting.dataset == dataset else ""
      if not name:
        continue
      steps, values = tables.learning_curve(record, name)
      converged = tables.convergence_columns(record)["converged"]
      label = setting.name + (" (unconverged)" if converged == "no" else "")
      mean, se = np.array([statistics.mean_and_standard_error(column) for column in values.T]).T
      se = np.nan_to_num(se)
      (line,) = axes[row, 0].plot(steps, mean, marker="o", ms=2, lw=1, label=label)
      axes[row, 0].fill_between(steps, mean - se, mean + se, color=line.get_color(), alpha=0.2)
      curve = tables.curve_over_steps(record)
      if "high_quality_fraction" in curve:
        axes[row, 1].plot(curve["steps"], curve["high_quality_fraction"], lw=1, label=label)
    axes[row, 0].set_title(f"{dataset}: exact hallucination rate", fontsize=8)
    axes[row, 1].set_title(f"{dataset}: high-quality fraction", fontsize=8)
    for ax in axes[row]:
      ax.set_xscale("log")
      ax.set_ylim(*FRACTION_LIMITS)
      ax.set_xlabel("training step", fontsize=7)
      ax.tick_params(labelsize=6)
      if ax.lines:
        ax.legend(fontsize=5)
      else:
        ax.axis("off")
  return fig


def write_all(out_dir: str, plan, records, setups) -> List[str]:
  directory = os.path.join(out_dir, "figures")
  os.makedirs(directory, exist_ok=True)
  paths = []
  for dataset in plan.datasets:
    items = []
    for setting, _ in records:
      if setting.dataset == dataset:
        saved = folder.saved_samples(out_dir, setting.stem)
        if saved is not None:
          items.append((setting.name, saved))
    if not items:
      continue
    spec = setups[dataset].reference.spec
    if spec.kind == "points":
      paths.append(
        points_figure(
          os.path.join(directory, f"samples_{dataset}.png"), dataset, spec.mixture, items
        )
      )
    else:
      paths.append(shapes_figure(os.path.join(directory, f"samples_{dataset}.png"), items))
  cal_rows = [
    row
    for setting, record in records
    for row in tables.calibration_rows(setting, record, setups[setting.dataset].reference)
  ]
  cal_rows = [r for r in cal_rows if np.isfinite(r["estimate"])]
  if cal_rows:
    paths.append(calibration_figure(os.path.join(directory, "calibration.png"), cal_rows))
  paths.append(filtering_figure(os.path.join(directory, "filtering.png"), plan, records))
  paths.append(
    learning_curves_figure(os.path.join(directory, "learning_curves.png"), plan, records)
  )
  if plan.protocol == "pacgan":
    paths.append(pacgan_figure(os.path.join(directory, "pacgan_curve.png"), plan, records))
  return paths


# --- Aithal et al.'s toy protocol (`--protocol aithal`) ------------------------------------


def _band(ax, x, rates, label, **style):
  mean = np.array([r["mean"] for r in rates], np.float64)
  se = np.nan_to_num(np.array([r["standard_error"] for r in rates], np.float64))
  (line,) = ax.plot(x, mean, marker="o", ms=3, lw=1.2, label=label, **style)
  ax.fill_between(x, mean - se, mean + se, color=line.get_color(), alpha=0.2, lw=0)


def aithal_figures(out_dir: str, datasets, records, sizes: Dict[str, Any], mixtures) -> List[str]:
  """`aithal_curves.png` (the rate against training steps, training points and sampling
  steps, with the standard error over seeds as a band), `aithal_filtering.png` (the variance
  and realism filters' curves, mean over seeds, with the paper's operating point) and
  `aithal_samples.png` (seed 0's final samples over the modes). Returns the paths."""
  os.makedirs(os.path.join(out_dir, "figures"), exist_ok=True)
  paths = []
  fig, axes = plt.subplots(len(datasets), 3, figsize=(11, 3.2 * len(datasets)), squeeze=False)
  for row, dataset in enumerate(datasets):
    record = records[f"aithal_steps_{dataset}"]
    ax = axes[row, 0]
    steps = [p["step"] for p in record["curve"]]
    _band(ax, steps, [p["support_hallucination_rate"] for p in record["curve"]], "off support")
    _band(ax, steps, [p["between_modes_rate"] for p in record["curve"]], "between modes")
    ax.set_xscale("log")
    ax.set_xlabel("training steps", fontsize=7)
    ax.set_title(f"{dataset}: against training steps", fontsize=8)
    ax = axes[row, 1]
    if sizes.get(dataset):
      _band(ax, [n for n, _ in sizes[dataset]], [r for _, r in sizes[dataset]], "off support")
      ax.set_xscale("log")
    ax.set_xlabel("training points", fontsize=7)
    size_steps = {
      r["settings"]["steps"] for s, r in records.items() if s.startswith(f"aithal_sizes_{dataset}_")
    }
    shown = ", ".join(f"{n:,}" for n in sorted(size_steps)) or "none"
    ax.set_title(f"{dataset}: against training points ({shown} steps)", fontsize=8)
    ax = axes[row, 2]
    curve = record.get("sampling_steps_curve", [])
    if curve:
      x = [p["sampling_steps"] for p in curve]
      _band(ax, x, [p["support_hallucination_rate"] for p in curve], "off support")
      _band(ax, x, [p["between_modes_rate"] for p in curve], "between modes")
      ax.set_xscale("log")
    ax.set_xlabel("sampling steps (ancestral)", fontsize=7)
    ax.set_title(f"{dataset}: against sampling steps", fontsize=8)
    for ax in axes[row]:
      ax.set_ylabel("hallucination rate", fontsize=7)
      ax.tick_params(labelsize=6)
      ax.legend(fontsize=6)
  paths.append(_save(fig, os.path.join(out_dir, "figures", "aithal_curves.png")))

  fig, axes = _panels(len(datasets), columns=2, size=3.6)
  for ax, dataset in zip(axes, datasets):
    per_seed = records[f"aithal_steps_{dataset}"]["curve"][-1]["per_seed"]
    curves = {
      score: [
        m["filters"][score] for m in per_seed if m["filters"][score]["removed_at_96"] is not None
      ]
      for score in ("variance", "realism")
    }
    curves = {score: summaries for score, summaries in curves.items() if summaries}
    _filter_panel(ax, curves, dataset, "seeds", "in-support", "Aithal et al. (paper)")
  paths.append(_save(fig, os.path.join(out_dir, "figures", "aithal_filtering.png")))

  fig, axes = _panels(len(datasets), columns=2, size=3.6)
  for ax, dataset in zip(axes, datasets):
    samples = np.asarray(records[f"aithal_steps_{dataset}"]["samples"], np.float64)
    # An untrained chain can diverge (x / sqrt(alpha_t) over 1000 steps): such samples are
    # hallucinations, counted in the title, but cannot be drawn.
    samples = np.where(np.isfinite(samples), samples, np.nan)
    finite = np.isfinite(samples).all(axis=1)
    mixture = mixtures[dataset]
    valid = np.asarray(mixture.support_check(samples))
    if mixture.dimension == 1:
      ax.hist(samples[finite, 0], bins=200, color="tab:blue")
      ax.set_yscale("log")
      for mode in mixture.means[:, 0]:
        ax.axvline(mode, color="red", lw=0.6)
      ax.set_xlabel("x", fontsize=7)
    else:
      ax.scatter(*samples[valid].T, s=1, c="tab:blue", label="in support")
      ax.scatter(*samples[~valid & finite].T, s=4, c="red", marker="x", label="hallucinated")
      ax.scatter(*mixture.means.T, s=20, c="k", marker="+", label="modes")
      ax.set_aspect("equal")
      ax.legend(fontsize=6)
    ax.set_title(f"{dataset}: {int((~valid).sum())} of {len(samples)} off support", fontsize=8)
    ax.tick_params(labelsize=6)
  paths.append(_save(fig, os.path.join(out_dir, "figures", "aithal_samples.png")))
  return paths
