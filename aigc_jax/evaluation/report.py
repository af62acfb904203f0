"""Evaluates a trained run: fidelity, distribution metrics and hallucination rates, on disk.

`evaluate_run` loads a run's checkpoint (parameters and BatchNorm statistics only) and, for
image datasets, the in-domain classifier of its dataset (features and class oracle; points
are their own feature space), then computes:
- AE / VAE: per-sample MSE (and for images PSNR, SSIM, MS-SSIM) of reconstructions of the
  held-out split (means and standard errors), the reconstruction class-flip rate, and on a
  dataset whose support is known exactly the exact reconstruction hallucination rate;
- VAE / GAN: FID, KID, precision / recall (k = 3), density / coverage (k = 5) of
  `num_samples` samples against the reference split, the manifold hallucination rate (with
  the flagged samples), the unrecognisable rate, for conditional models the control error
  rate, on a dataset of known support the exact support hallucination rate, and on the
  Gaussian mixtures PacGAN's modes captured / high-quality fraction / reverse KL.

Every estimated rate comes with its real-data FLOOR: the same estimator applied to held-out
real data as if it were generated (what a perfect model would score). The real sets follow the
one rule of `evaluation.reference` (shared with the hallucination benchmark): the k-NN
reference is a fixed random subset of at most 10,000 training examples, so the held-out split
is free to measure the floor on; both are named in `eval.json`. The rates are computed by
`evaluation.evaluators`, under its canonical names.

It writes `settings.json`, `eval.json`, `eval.md` (a markdown table) and `hallucinated.png`
(flagged samples beside samples that were not flagged, each panel titled with its count;
flagged by the exact check where the support is known, else by the manifold estimate) under
`<workdir>/eval/step_<N>/samples_<n>_seed_<s>_<hash>/`: one folder per set of settings that
change the numbers (`<hash>` covers the rest: classifier, batch size), so a quick small run
never replaces a large one.
"""

import hashlib
import json
import math
import os
from typing import Any, Dict, List, Optional, Tuple

import jax
from matplotlib.figure import Figure
import numpy as np
import tqdm

from aigc_jax import data, inference
from aigc_jax.errors import ConfigError
from aigc_jax.evaluation import (
  distribution,
  evaluators,
  fidelity,
  hallucination,
  sampling,
  statistics,
)
from aigc_jax.evaluation.features import (
  ClassifierFeatureExtractor,
  FeatureExtractor,
  IdentityFeatureExtractor,
)
from aigc_jax.evaluation.reference import Reference, build_reference
from aigc_jax.image_grid import draw_points_on_axes, points_radius, save_side_by_side
from aigc_jax.workdir import LATEST_DIR, ensure_writable, newest_step

GRID_SIZE = 32  # Samples per side of the hallucination figure.
PRECISION_RECALL_K = evaluators.PRECISION_RECALL_K  # Kynkäänniemi et al. 2019.
DENSITY_COVERAGE_K = 5  # Naeem et al. 2020.


def minimum_num_samples(feature_dim: int) -> int:
  """The fewest samples whose sample metrics mean something.

  The k-NN metrics need more than k samples (each sample's k-th neighbour among the others),
  and FID's sample covariance of D-dimensional features has full rank only with more than
  D samples.
  """
  return max(PRECISION_RECALL_K, DENSITY_COVERAGE_K, feature_dim) + 1


def ms_ssim_settings(height: int, width: int) -> Dict[str, Any]:
  """MS-SSIM settings for small images: the standard 11-tap, 5-scale form needs 176 pixels.

  Below that the window shrinks to 7 taps and the number of scales to what fits (weights of
  the coarsest scales renormalised, `fidelity.ms_ssim_weights`): 3 scales at 28x28, 1 (plain
  SSIM with a 7-tap window) at 8x8. The settings used are recorded in `eval.json`.
  """
  side = min(height, width)
  if side >= fidelity.ms_ssim_min_size(11, 5):
    return {"filter_size": 11, "num_scales": 5}
  filter_size = min(7, side - (1 - side % 2))  # Odd and no larger than the image.
  num_scales = max(1, int(math.floor(math.log2(side / filter_size))) + 1)
  return {"filter_size": filter_size, "num_scales": num_scales}


def ssim_settings(height: int, width: int) -> Optional[Dict[str, Any]]:
  """SSIM's window for images of this size: the paper's 11 taps where they fit, else 7 (the
  small-image window of `ms_ssim_settings`) or the largest odd size that fits; None below
  3 pixels, where no window has room for local statistics."""
  side = min(height, width)
  if side >= 11:
    return {"filter_size": 11}
  if side < 3:
    return None
  return {"filter_size": min(7, side - (1 - side % 2))}


def image_fidelity_plan(
  height: int, width: int
) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]], List[str]]:
  """(SSIM settings, MS-SSIM settings, notes for the report) for `height` x `width` images.

  A metric is None when it cannot apply at this size: SSIM below 3 pixels, MS-SSIM when only
  one scale fits (it would be SSIM again). Each change from the standard form, and each
  skipped metric, has a note saying so.
  """
  notes = []
  ssim = ssim_settings(height, width)
  if ssim is None:
    notes.append(
      f"ssim and ms_ssim skipped: {height}x{width} images are too small for any SSIM window."
    )
    return None, None, notes
  if ssim["filter_size"] != 11:
    notes.append(
      f"ssim uses a {ssim['filter_size']}-tap Gaussian window: the standard 11 "
      f"taps do not fit {height}x{width} images."
    )
  ms_ssim = ms_ssim_settings(height, width)
  if ms_ssim["num_scales"] < 2:
    notes.append(f"ms_ssim skipped: at {height}x{width} only one scale fits, which is ssim.")
    return ssim, None, notes
  if ms_ssim != {"filter_size": 11, "num_scales": 5}:
    notes.append(
      f"ms_ssim uses {ms_ssim['num_scales']} scales of a "
      f"{ms_ssim['filter_size']}-tap window (the standard 5 scales of 11 taps need "
      f"{fidelity.ms_ssim_min_size(11, 5)} pixels), weights renormalised."
    )
  return ssim, ms_ssim, notes


def _mean_and_standard_error(values) -> Dict[str, float]:
  mean, standard_error = statistics.mean_and_standard_error(values)
  return {"mean": mean, "standard_error": standard_error}


def with_floors(
  rates: Dict[str, hallucination.RateEstimate], floors: Dict[str, hallucination.RateEstimate]
) -> Dict[str, Dict[str, Any]]:
  """Each rate's dict, with the same estimator's rate on held-out real data under "floor"."""
  out = {}
  for name, estimate in rates.items():
    out[name] = estimate.as_dict()
    if name in floors:
      out[name]["floor"] = floors[name].as_dict()
  return out


def load_reference(dataset: str, extractor: FeatureExtractor, data_dir: Optional[str]) -> Reference:
  """The dataset's `Reference` (`evaluation.reference`'s rule; the whole test split is the
  held-out floor set)."""
  spec = data.get_dataset_spec(dataset)
  train = data.load_split_images(dataset, spec.train_split, data_dir)
  test = data.load_split_images(dataset, spec.test_split, data_dir)
  return build_reference(
    spec, train, test, extractor, train_split=spec.train_split, test_split=spec.test_split
  )


def _reconstruction(
  family, state, reference: Reference, key, batch_size
) -> Tuple[Dict[str, Any], Dict[str, Any], List[str]]:
  """(fidelity metrics, reconstruction hallucination rates, notes on metrics adapted to the
  image size or skipped) of the held-out split."""
  inputs, labels = reference.held_out, reference.held_out_labels
  outputs = sampling.reconstruct(family, state, inputs, labels, key, batch_size)
  notes = []
  if reference.spec.kind == "points":  # Mean over coordinates: the per-image mean's counterpart.
    per_sample = {"mse": np.mean(np.square(inputs - outputs), axis=-1)}
  else:
    per_sample = {"mse": fidelity.mse(inputs, outputs), "psnr": fidelity.psnr(inputs, outputs)}
  results = {name: _mean_and_standard_error(v) for name, v in per_sample.items()}
  if reference.spec.kind == "image":
    ssim, ms_ssim, notes = image_fidelity_plan(*inputs.shape[1:3])
    if ssim is not None:
      results["ssim"] = _mean_and_standard_error(fidelity.ssim(inputs, outputs, **ssim))
      results["ssim"]["settings"] = ssim
    if ms_ssim is not None:
      results["ms_ssim"] = _mean_and_standard_error(
        fidelity.ms_ssim(
          inputs,
          outputs,
          filter_size=ms_ssim["filter_size"],
          weights=fidelity.ms_ssim_weights(ms_ssim["num_scales"]),
        )
      )
      results["ms_ssim"]["settings"] = ms_ssim
  rates = evaluators.reconstruction_rates(reference, inputs, labels, outputs)
  return results, with_floors(evaluators.estimates(rates), reference.floors), notes


def generation_results(
  reference: Reference, samples: np.ndarray, key, requested=None
) -> Tuple[Dict[str, Any], np.ndarray, str]:
  """Sample metrics and rates of generated `samples` `[N, *sample_shape]` (`requested` `[N]`
  classes of a conditional model); returns (results, per-sample flags, what they mean):
  flagged by the exact check where the support is known, else by the manifold estimate."""
  real_feats = reference.reference_feats
  measured = evaluators.sample_set(reference.extractor, samples, requested)
  fake_feats = measured.feats
  precision, recall = distribution.precision_recall(real_feats, fake_feats, k=PRECISION_RECALL_K)
  density, coverage = distribution.density_coverage(real_feats, fake_feats, k=DENSITY_COVERAGE_K)
  subset_size = min(1000, len(real_feats), len(fake_feats))
  kid_mean, kid_std = distribution.kernel_inception_distance(
    real_feats, fake_feats, key, num_subsets=100, subset_size=subset_size
  )
  rates = evaluators.sample_rates(reference, measured, evaluators.GENERATION)
  results = {
    "num_samples": int(len(samples)),
    "fid": distribution.frechet_distance(real_feats, fake_feats),
    "kid": {"mean": float(kid_mean), "std": float(kid_std), "subset_size": subset_size},
    "precision": float(precision),
    "recall": float(recall),
    "density": float(density),
    "coverage": float(coverage),
    **with_floors(evaluators.estimates(rates), reference.floors),
  }
  if "support_hallucination_rate" in rates:
    flags, meaning = rates["support_hallucination_rate"][1], "outside the known support"
  else:
    flags, meaning = rates["manifold_hallucination_rate"][1], "off the manifold"
  modes = evaluators.mode_metrics(reference, samples)
  if modes is not None:
    results["mode_collapse"] = dict(modes, floor=reference.mode_floor)
  return results, np.asarray(flags), meaning


def hallucination_figure_titles(flags: np.ndarray, meaning: str = "off the manifold") -> List[str]:
  """The two panel titles: how many samples each side holds, of how many, and how many shown.

  `meaning` says what flagged them ("off the manifold", "outside the known support").
  """
  flags = np.asarray(flags, bool)
  flagged, total = int(flags.sum()), len(flags)
  return [
    f"flagged ({meaning}): {flagged} of {total}, {min(flagged, GRID_SIZE)} shown",
    f"not flagged: {total - flagged} of {total}, {min(total - flagged, GRID_SIZE)} shown",
  ]


# The 2-D hallucination figure: inches at HALLUCINATION_FIGURE_DPI (900 x 450 pixels).
HALLUCINATION_FIGURE_INCHES = (9.0, 4.5)
HALLUCINATION_FIGURE_DPI = 100


def hallucination_points_figure(
  samples: np.ndarray, flags: np.ndarray, meaning: str = "off the manifold", modes=None
) -> Figure:
  """2-D points `[N, 2]` -> a matplotlib figure of two panels on the same axes: left the
  flagged samples, right the others (every sample of each side is drawn), each titled with its
  count, and `modes` `[K, 2]` (the mixture's true means, if known) as red crosses in both; a
  legend below says what the marks are."""
  flags = np.asarray(flags, bool)
  radius = points_radius(samples, modes)
  titles = [
    t.replace(f"{min(int(c), GRID_SIZE)} shown", "all shown").replace(": ", "\n", 1)
    for t, c in zip(hallucination_figure_titles(flags, meaning), (flags.sum(), (~flags).sum()))
  ]
  figure = Figure(
    figsize=HALLUCINATION_FIGURE_INCHES, dpi=HALLUCINATION_FIGURE_DPI, layout="constrained"
  )
  for axes, side, title in zip(figure.subplots(1, 2), (flags, ~flags), titles):
    draw_points_on_axes(axes, samples[side], radius, modes)
    axes.set_title(title, fontsize=10)
  handles, labels = figure.axes[0].get_legend_handles_labels()
  figure.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=9)
  return figure


def save_hallucination_figure(
  path: str, samples: np.ndarray, flags: np.ndarray, meaning: str = "off the manifold", modes=None
) -> str:
  """Left: up to GRID_SIZE flagged samples; right: as many that were not flagged.

  Images make two grids, each with a title strip naming it and its count
  (`hallucination_figure_titles`); 2-D points make `hallucination_points_figure` (`modes`, the
  true modes, drawn if given).
  """
  flags = np.asarray(flags, bool)
  if np.ndim(samples) == 2:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    hallucination_points_figure(samples, flags, meaning, modes).savefig(
      path, dpi=HALLUCINATION_FIGURE_DPI
    )
    return path
  titles = hallucination_figure_titles(flags, meaning)
  halves = [samples[flags][:GRID_SIZE], samples[~flags][:GRID_SIZE]]
  return save_side_by_side(
    path, [h if len(h) else np.ones_like(samples[:1]) for h in halves], upscale=2, titles=titles
  )


def _rate_row(name: str, value: Dict[str, Any]) -> str:
  floor = value.get("floor")
  floor_text = (
    f"{floor['rate']:.4f} [{floor['ci_low']:.4f}, {floor['ci_high']:.4f}]" if floor else ""
  )
  return (
    f"| {name} | {value['rate']:.4f} ({value['count']}/{value['n']}) | "
    f"[{value['ci_low']:.4f}, {value['ci_high']:.4f}] (95% Wilson) | {floor_text} |"
  )


def _markdown(results: Dict[str, Any]) -> str:
  """One table: metric | value | 95% interval or standard error | real-data floor."""
  settings = results["settings"]
  oracle = results.get("classifier")
  model = f"Model: {results['family']} on {results['dataset']}"
  model += (
    f"; classifier test accuracy {oracle['test_accuracy']:.4f}."
    if oracle
    else "; feature space: the coordinates themselves."
  )
  reference = results["reference"]
  lines = [
    f"# Evaluation of {results['workdir']} at step {results['step']}",
    "",
    model,
    "",
    f"Settings: num_samples {settings['num_samples']}, seed {settings['seed']}, "
    f"batch_size {settings['batch_size']}, classifier "
    f"{settings['classifier_workdir'] or 'none'}"
    + (f" (step {settings['classifier_step']})." if oracle else "."),
    "",
    f"Real data: the k-NN reference is {reference['n']} of the {reference['of']} "
    f"'{reference['split']}' examples; reconstructions and floors use the "
    f"{results['held_out']['n']} held-out '{results['held_out']['split']}' examples. "
    "The floor is each estimator's rate on that held-out real data treated as "
    "generated: what a perfect model would score.",
    "",
    "| metric | value | uncertainty | real-data floor |",
    "|---|---|---|---|",
  ]
  for name, value in results.get("fidelity", {}).items():
    lines.append(f"| {name} | {value['mean']:.4f} | ± {value['standard_error']:.4f} (s.e.) | |")
  for group in ("reconstruction", "generation"):
    for name, value in results.get(group, {}).items():
      if isinstance(value, dict) and "rate" in value:
        lines.append(_rate_row(name, value))
      elif name == "kid":
        lines.append(f"| kid | {value['mean']:.5f} | ± {value['std']:.5f} (std over subsets) | |")
      elif name == "mode_collapse":
        floor = value["floor"]
        lines.append(
          f"| modes_captured | {value['modes_captured']} of {len(value['counts'])} "
          f"| | {floor['modes_captured']} |"
        )
        lines.append(
          f"| high_quality_fraction | {value['high_quality_fraction']:.4f} | | "
          f"{floor['high_quality_fraction']:.4f} |"
        )
        lines.append(
          f"| reverse_kl (nats) | {value['reverse_kl']:.4f} | | {floor['reverse_kl']:.4f} |"
        )
      elif isinstance(value, float):
        lines.append(f"| {name} | {value:.4f} | | |")
  if results.get("notes"):
    lines += ["", "Notes:"] + [f"- {note}" for note in results["notes"]]
  return "\n".join(lines) + "\n"


def _output_dir(root: str, step: int, settings: Dict[str, Any]) -> str:
  """`root/step_<N>/samples_<n>_seed_<s>_<hash of all settings>`."""
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6]
  return os.path.join(
    root, f"step_{step}", f"samples_{settings['num_samples']}_seed_{settings['seed']}_{digest}"
  )


def evaluate_run(
  workdir: str,
  *,
  classifier_workdir: Optional[str] = None,
  num_samples: int = 10_000,
  step: Optional[int] = None,
  seed: int = 0,
  batch_size: int = 500,
  data_dir: Optional[str] = None,
  eval_dir: Optional[str] = None,
  classifier_configs: Optional[Dict[str, str]] = None,
) -> Dict[str, Any]:
  """Evaluates the run in `workdir` and writes its report; returns the results dict.

  What can be checked is checked before the work starts (sampling and the metrics take
  tens of seconds): `num_samples` against `minimum_num_samples`, and that the output folder
  can be written.

  Args:
    workdir: a training run's workdir (checkpoints are read, nothing is changed; the run
      may be training meanwhile).
    classifier_workdir: a workdir of the "classifier" family trained on the same dataset;
      None = `runs/classifier_<dataset>`.
    num_samples: samples drawn for the distribution metrics and hallucination rates.
    step: checkpoint step; None = the newest readable one.
    seed: seeds the samples and KID's subsets.
    batch_size: images per compiled call of sampling and reconstruction.
    data_dir: tfds data_dir (default: the run's `dataset.data_dir`, then tfds's default).
    eval_dir: where reports go (default `<workdir>/eval`).
    classifier_configs: `{dataset name: config file}` of the classifier configs, named in the
      message when no classifier is found (None: the message names none).

  Raises:
    ConfigError if `num_samples` is too small for the sample metrics (the message gives the
    minimum), no classifier is found, or the run is not of a generative model (a
    classifier); WorkdirError if the output folder cannot be written.
  """
  if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
    raise ConfigError(
      f"num_samples is {num_samples!r} (allowed: an integer >= 1); pass "
      "--num_samples of at least a few hundred."
    )
  # disable=None: no bar (nor its carriage returns and cursor escapes) on a stderr that is
  # not a terminal, such as a log file.
  progress = tqdm.tqdm(total=5, desc="evaluating", unit="phase", disable=None)
  try:
    return _evaluate_run(
      workdir,
      classifier_workdir,
      num_samples,
      step,
      seed,
      batch_size,
      data_dir,
      eval_dir,
      classifier_configs,
      progress,
    )
  finally:
    progress.close()


def missing_classifier_message(
  dataset: str, classifier_workdir: str, classifier_configs: Optional[Dict[str, str]]
) -> str:
  """What to run when `classifier_workdir` holds no classifier for `dataset`.

  `classifier_configs` maps dataset names to the config files that train their classifier
  (`experiments/configs/classifier_*.py`); None when the caller does not know them.
  """
  where = f"No classifier checkpoints in {classifier_workdir}"
  train = "python -m experiments.train --config"
  if not classifier_configs:
    return (
      f"{where}; train the {dataset} classifier (model.family 'classifier') there "
      "first (see experiments/configs/classifier_*.py), or pass --classifier_workdir."
    )
  if dataset in classifier_configs:
    return (
      f"{where}; train the {dataset} classifier first: {train} "
      f"{classifier_configs[dataset]} --workdir {classifier_workdir}"
    )
  existing = ", ".join(
    f"{os.path.basename(path)} ({name})" for name, path in sorted(classifier_configs.items())
  )
  example = sorted(classifier_configs.values())[0]
  return (
    f"{where}, and no classifier config exists for dataset {dataset!r} (there are: "
    f"{existing}); train one on {dataset} first, e.g. {train} {example} "
    f"--config.dataset.name={dataset} --workdir {classifier_workdir}"
  )


def _feature_space(
  spec,
  dataset: str,
  classifier_workdir: Optional[str],
  classifier_configs: Optional[Dict[str, str]],
) -> Tuple[FeatureExtractor, Optional[str], Optional[int]]:
  """(extractor, classifier workdir, its step): points are their own feature space; images
  need the dataset's classifier (features and class oracle)."""
  if spec.kind == "points":
    return IdentityFeatureExtractor(), None, None
  classifier_workdir = classifier_workdir or os.path.join("runs", f"classifier_{dataset}")
  if not os.path.isdir(os.path.join(classifier_workdir, LATEST_DIR)):
    raise ConfigError(missing_classifier_message(dataset, classifier_workdir, classifier_configs))
  classifier_step = newest_step(classifier_workdir)  # Pinned: it names the report.
  extractor = ClassifierFeatureExtractor.from_state(
    inference.load_classifier(classifier_workdir, step=classifier_step, dataset=dataset)
  )
  return extractor, classifier_workdir, classifier_step


def _evaluate_run(
  workdir,
  classifier_workdir,
  num_samples,
  step,
  seed,
  batch_size,
  data_dir,
  eval_dir,
  classifier_configs,
  progress,
) -> Dict[str, Any]:
  config, family, state, loaded_step = inference.load_for_inference(workdir, step)
  if family.generate is None and family.reconstruct is None:
    raise ConfigError(
      f"{workdir} is a run of model.family {config.model.family!r}, which neither "
      "generates nor reconstructs; experiments.evaluate evaluates generative models only "
      "(ae, vae, gan). A classifier run serves as --classifier_workdir."
    )
  eval_root = eval_dir or os.path.join(workdir, "eval")
  ensure_writable(eval_root, "--eval_dir" if eval_dir else "--eval_dir (default <workdir>/eval)")
  dataset = config.dataset.name
  spec = data.get_dataset_spec(dataset)
  extractor, classifier_workdir, classifier_step = _feature_space(
    spec, dataset, classifier_workdir, classifier_configs
  )
  data_dir = data_dir or config.dataset.get("data_dir") or None
  reference = load_reference(dataset, extractor, data_dir)
  if family.generate is not None:
    feature_dim = reference.feature_dim
    minimum = minimum_num_samples(feature_dim)
    if num_samples < minimum:
      raise ConfigError(
        f"num_samples is {num_samples}, too few for the sample metrics: the k-NN metrics "
        f"need more than k = {max(PRECISION_RECALL_K, DENSITY_COVERAGE_K)} samples and FID "
        f"more than the feature width {feature_dim}; pass --num_samples >= {minimum}."
      )
  settings = {
    "num_samples": num_samples,
    "seed": seed,
    "batch_size": batch_size,
    "classifier_workdir": (os.path.abspath(classifier_workdir) if classifier_workdir else None),
    "classifier_step": classifier_step,
  }
  progress.update(2)
  key = jax.random.PRNGKey(seed)
  results: Dict[str, Any] = {
    "workdir": os.path.abspath(workdir),
    "step": loaded_step,
    "family": config.model.family,
    "dataset": dataset,
    "num_test_images": int(len(reference.held_out)),
    "seed": seed,
    "settings": settings,
    "reference": reference.reference_split,
    "held_out": reference.held_out_split,
  }
  if classifier_workdir:
    results["classifier"] = {
      "workdir": os.path.abspath(classifier_workdir),
      "test_accuracy": reference.oracle_accuracy,
    }
  if family.reconstruct is not None:
    results["fidelity"], results["reconstruction"], notes = _reconstruction(
      family, state, reference, key, batch_size
    )
    if notes:
      results["notes"] = notes
  progress.update(1)
  out_dir = _output_dir(eval_root, loaded_step, settings)
  os.makedirs(out_dir, exist_ok=True)
  if family.generate is not None:
    requested = (
      np.arange(num_samples, dtype=np.int32) % spec.num_classes if family.conditional else None
    )
    samples = sampling.generate(
      family, state, num_samples, jax.random.fold_in(key, 1), batch_size, requested
    )
    progress.update(1)
    results["generation"], flags, meaning = generation_results(
      reference, samples, jax.random.fold_in(key, 2), requested
    )
    results["hallucination_figure"] = save_hallucination_figure(
      os.path.join(out_dir, "hallucinated.png"),
      samples,
      flags,
      meaning,
      modes=None if spec.mixture is None else spec.mixture.means,
    )
  else:
    progress.update(1)
  with open(os.path.join(out_dir, "settings.json"), "w", encoding="utf-8") as f:
    json.dump({"step": loaded_step, **settings}, f, indent=2)
  with open(os.path.join(out_dir, "eval.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(out_dir, "eval.md"), "w", encoding="utf-8") as f:
    f.write(_markdown(results))
  progress.update(1)
  results["output_dir"] = out_dir
  return results
