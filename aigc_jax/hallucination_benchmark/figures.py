"""The benchmark's figures (matplotlib, Agg backend), written under `out_dir/figures/`:

* `samples_<dataset>.png` (mixtures): seed 0's final samples of each setting over the modes
  (3-standard-deviation circles); valid samples blue, hallucinated ones red crosses.
* `samples_simple_shapes.png`: 8x8 grids of seed 0's final samples per setting, the
  hallucinated ones outlined in red.
* `calibration.png`: every estimate against the exact rate it targets, one panel per
  estimator, the diagonal for reference.
* `filtering.png`: fraction of hallucinations removed against fraction of valid samples kept,
  per dataset and score (mean over the final models), with Aithal et al.'s operating point.
* `pacgan_curve.png` (pacgan protocol): modes captured and high-quality fraction against steps.
"""

import os
from typing import Any, Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from aigc_jax.hallucination_benchmark import folder, tables  # pylint: disable=wrong-import-position

GRID_SIDE = 8
AITHAL_POINT = (0.96, 0.95)  # Valid kept, hallucinations removed (Aithal et al. 2024).
FRACTION_LIMITS = (-0.02, 1.02)  # Axes of fractions, padded so that 0 and 1 stay visible.


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
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


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
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


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
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


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
    for score, summaries in sorted(curves.items()):
      kept = np.mean([s["valid_kept"] for s in summaries], axis=0)
      removed = np.mean([s["hallucinations_removed"] for s in summaries], axis=0)
      ax.plot(kept, removed, label=f"{score} ({len(summaries)} models)", lw=1.2)
    ax.scatter(*AITHAL_POINT, marker="*", c="k", s=40, label="Aithal et al. (diffusion)")
    # Padded: curves often run along 0 or 1, where an unpadded frame would hide them.
    ax.set_xlim(*FRACTION_LIMITS)
    ax.set_ylim(*FRACTION_LIMITS)
    ax.set_xlabel("fraction of valid samples kept", fontsize=7)
    ax.set_ylabel("fraction of hallucinations removed", fontsize=7)
    ax.set_title(dataset, fontsize=8)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=6)
  fig.tight_layout()
  return fig


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
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


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
  if plan.protocol == "pacgan":
    paths.append(pacgan_figure(os.path.join(directory, "pacgan_curve.png"), plan, records))
  return paths
