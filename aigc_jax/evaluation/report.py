"""Evaluates a trained run: fidelity, distribution metrics and hallucination rates, on disk.

`evaluate_run` loads a run's checkpoint (parameters and BatchNorm statistics only) and the
in-domain classifier of its dataset (features and class oracle), then computes on the test
split:
- AE / VAE: per-image MSE, PSNR, SSIM and MS-SSIM of reconstructions (means and standard
  errors) and the reconstruction class-flip rate;
- VAE / GAN: FID, KID, precision / recall (k = 3), density / coverage (k = 5) of
  `num_samples` samples against the test split, the manifold hallucination rate (with the
  flagged samples) and the unrecognisable rate.
It writes `settings.json`, `eval.json`, `eval.md` (a markdown table) and `hallucinated.png`
(flagged samples beside samples that were not flagged, each panel titled with its count)
under `<workdir>/eval/step_<N>/samples_<n>_seed_<s>_<hash>/`: one folder per set of settings
that change the numbers (`<hash>` covers the rest: classifier, batch size), so a quick
small run never replaces a large one.
"""
import hashlib
import json
import math
import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from aigc_jax import checkpointing, data
from aigc_jax.errors import ConfigError
from aigc_jax.evaluation import distribution, fidelity, hallucination
from aigc_jax.evaluation.features import ClassifierFeatureExtractor, FeatureExtractor
from aigc_jax.image_grid import save_side_by_side
from aigc_jax.workdir import ensure_writable

GRID_SIZE = 32  # Samples per side of the hallucination figure.
PRECISION_RECALL_K = 3  # Kynkäänniemi et al. 2019.
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


def _in_batches(fn, inputs: np.ndarray, batch_size: int) -> np.ndarray:
  """`fn` over fixed-size, zero-padded batches of `inputs` (one compilation)."""
  outputs = []
  for start in range(0, len(inputs), batch_size):
    chunk = inputs[start:start + batch_size]
    padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk),) + chunk.shape[1:],
                                             chunk.dtype)])
    outputs.append(np.asarray(fn(padded))[:len(chunk)])
  return np.concatenate(outputs)


def _mean_and_standard_error(values) -> Dict[str, float]:
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]  # PSNR of a perfect reconstruction is inf.
  return {"mean": float(values.mean()),
          "standard_error": float(values.std(ddof=1) / np.sqrt(len(values)))}


def _fidelity(family, state, images, labels, extractor, key, batch_size) -> Dict[str, Any]:
  reconstructions = _in_batches(lambda x: family.reconstruct(state, x, key), images, batch_size)
  settings = ms_ssim_settings(*images.shape[1:3])
  per_image = {
      "mse": fidelity.mse(images, reconstructions),
      "psnr": fidelity.psnr(images, reconstructions),
      "ssim": fidelity.ssim(images, reconstructions),
      "ms_ssim": fidelity.ms_ssim(images, reconstructions, filter_size=settings["filter_size"],
                                  weights=fidelity.ms_ssim_weights(settings["num_scales"])),
  }
  results = {name: _mean_and_standard_error(v) for name, v in per_image.items()}
  results["ms_ssim"]["settings"] = settings
  flip, _ = hallucination.reconstruction_class_flip_rate(
      extractor.probabilities(reconstructions), labels)
  return {"fidelity": results, "reconstruction_class_flip_rate": flip.as_dict()}


def _samples(family, state, num_samples, key, batch_size) -> np.ndarray:
  batches = []
  for index in tqdm.trange(-(-num_samples // batch_size), desc="sampling", leave=False):
    batches.append(np.asarray(family.generate(state, jax.random.fold_in(key, index),
                                              batch_size)))
  return np.concatenate(batches)[:num_samples]


def _generation(samples, real_feats, extractor, key) -> Tuple[Dict[str, Any], np.ndarray]:
  fake_feats = extractor.features(samples)
  precision, recall = distribution.precision_recall(real_feats, fake_feats,
                                                    k=PRECISION_RECALL_K)
  density, coverage = distribution.density_coverage(real_feats, fake_feats,
                                                    k=DENSITY_COVERAGE_K)
  subset_size = min(1000, len(real_feats), len(fake_feats))
  kid_mean, kid_std = distribution.kernel_inception_distance(
      real_feats, fake_feats, key, num_subsets=100, subset_size=subset_size)
  manifold, manifold_flags = hallucination.manifold_hallucination_rate(
      real_feats, fake_feats, k=PRECISION_RECALL_K)
  unrecognisable, _ = hallucination.unrecognisable_rate(extractor.probabilities(samples))
  results = {
      "num_samples": int(len(samples)),
      "fid": distribution.frechet_distance(real_feats, fake_feats),
      "kid": {"mean": float(kid_mean), "std": float(kid_std), "subset_size": subset_size},
      "precision": float(precision), "recall": float(recall),
      "density": float(density), "coverage": float(coverage),
      "manifold_hallucination_rate": manifold.as_dict(),
      "unrecognisable_rate": unrecognisable.as_dict(),
  }
  return results, np.asarray(manifold_flags)


def hallucination_figure_titles(flags: np.ndarray) -> List[str]:
  """The two panel titles: how many samples each side holds, of how many, and how many shown."""
  flags = np.asarray(flags, bool)
  flagged, total = int(flags.sum()), len(flags)
  return [f"flagged (off the manifold): {flagged} of {total}, "
          f"{min(flagged, GRID_SIZE)} shown",
          f"not flagged: {total - flagged} of {total}, {min(total - flagged, GRID_SIZE)} shown"]


def save_hallucination_figure(path: str, samples: np.ndarray, flags: np.ndarray) -> str:
  """Left grid: up to GRID_SIZE flagged samples; right grid: as many that were not flagged.

  Each panel has a title strip naming it and its count (`hallucination_figure_titles`).
  """
  flags = np.asarray(flags, bool)
  halves = [samples[flags][:GRID_SIZE], samples[~flags][:GRID_SIZE]]
  return save_side_by_side(path, [h if len(h) else np.ones_like(samples[:1]) for h in halves],
                           upscale=2, titles=hallucination_figure_titles(flags))


def _markdown(results: Dict[str, Any]) -> str:
  """One table: metric | value | 95% interval or standard error."""
  settings = results["settings"]
  lines = [f"# Evaluation of {results['workdir']} at step {results['step']}", "",
           f"Model: {results['family']} on {results['dataset']}; classifier test accuracy "
           f"{results['classifier']['test_accuracy']:.4f}.", "",
           f"Settings: num_samples {settings['num_samples']}, seed {settings['seed']}, "
           f"batch_size {settings['batch_size']}, classifier {settings['classifier_workdir']} "
           f"(step {settings['classifier_step']}).", "",
           "| metric | value | uncertainty |", "|---|---|---|"]
  for name, value in results.get("fidelity", {}).items():
    lines.append(f"| {name} | {value['mean']:.4f} | ± {value['standard_error']:.4f} (s.e.) |")
  for group in ("reconstruction", "generation"):
    for name, value in results.get(group, {}).items():
      if isinstance(value, dict) and "rate" in value:
        lines.append(f"| {name} | {value['rate']:.4f} ({value['count']}/{value['n']}) | "
                     f"[{value['ci_low']:.4f}, {value['ci_high']:.4f}] (95% Wilson) |")
      elif name == "kid":
        lines.append(f"| kid | {value['mean']:.5f} | ± {value['std']:.5f} (std over subsets) |")
      elif isinstance(value, float):
        lines.append(f"| {name} | {value:.4f} | |")
  return "\n".join(lines) + "\n"


def _output_dir(root: str, step: int, settings: Dict[str, Any]) -> str:
  """`root/step_<N>/samples_<n>_seed_<s>_<hash of all settings>`."""
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6]
  return os.path.join(root, f"step_{step}",
                      f"samples_{settings['num_samples']}_seed_{settings['seed']}_{digest}")


def evaluate_run(workdir: str, *, classifier_workdir: Optional[str] = None,
                 num_samples: int = 10_000, step: Optional[int] = None, seed: int = 0,
                 batch_size: int = 500, data_dir: Optional[str] = None,
                 eval_dir: Optional[str] = None) -> Dict[str, Any]:
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

  Raises:
    ConfigError if `num_samples` is too small for the sample metrics (the message gives the
    minimum) or no classifier is found; WorkdirError if the output folder cannot be written.
  """
  if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
    raise ConfigError(f"num_samples is {num_samples!r} (allowed: an integer >= 1); pass "
                      "--num_samples of at least a few hundred.")
  progress = tqdm.tqdm(total=5, desc="evaluating", unit="phase")
  try:
    return _evaluate_run(workdir, classifier_workdir, num_samples, step, seed, batch_size,
                         data_dir, eval_dir, progress)
  finally:
    progress.close()


def _evaluate_run(workdir, classifier_workdir, num_samples, step, seed, batch_size, data_dir,
                  eval_dir, progress) -> Dict[str, Any]:
  config, family, state, loaded_step = checkpointing.load_for_inference(workdir, step)
  eval_root = eval_dir or os.path.join(workdir, "eval")
  ensure_writable(eval_root, "--eval_dir" if eval_dir else "--eval_dir (default <workdir>/eval)")
  classifier_workdir = classifier_workdir or os.path.join("runs",
                                                          f"classifier_{config.dataset.name}")
  if not os.path.isdir(os.path.join(classifier_workdir, checkpointing.LATEST_DIR)):
    raise ConfigError(
        f"No classifier checkpoints in {classifier_workdir}; train the {config.dataset.name} "
        "classifier first: python -m experiments.train --config "
        f"experiments/configs/classifier_<dataset>.py --config.dataset.name="
        f"{config.dataset.name} --workdir {classifier_workdir}")
  classifier_step = checkpointing.newest_step(classifier_workdir)  # Pinned: it names the report.
  extractor: FeatureExtractor = ClassifierFeatureExtractor.from_workdir(
      classifier_workdir, step=classifier_step, dataset=config.dataset.name)
  data_dir = data_dir or config.dataset.get("data_dir") or None
  images, labels = data.load_split_images(
      config.dataset.name, data.get_dataset_spec(config.dataset.name).test_split, data_dir)
  real_feats = extractor.features(images)
  if family.generate is not None:
    minimum = minimum_num_samples(int(real_feats.shape[-1]))
    if num_samples < minimum:
      raise ConfigError(
          f"num_samples is {num_samples}, too few for the sample metrics: the k-NN metrics "
          f"need more than k = {max(PRECISION_RECALL_K, DENSITY_COVERAGE_K)} samples and FID "
          f"more than the feature width {real_feats.shape[-1]}; pass --num_samples >= "
          f"{minimum}.")
  settings = {"num_samples": num_samples, "seed": seed, "batch_size": batch_size,
              "classifier_workdir": os.path.abspath(classifier_workdir),
              "classifier_step": classifier_step}
  progress.update(1)
  accuracy = float(np.mean(np.argmax(np.asarray(extractor.probabilities(images)), -1) == labels))
  progress.update(1)
  key = jax.random.PRNGKey(seed)
  results: Dict[str, Any] = {
      "workdir": os.path.abspath(workdir), "step": loaded_step,
      "family": config.model.family, "dataset": config.dataset.name,
      "classifier": {"workdir": os.path.abspath(classifier_workdir), "test_accuracy": accuracy},
      "num_test_images": int(len(images)), "seed": seed, "settings": settings,
  }
  if family.reconstruct is not None:
    recon = _fidelity(family, state, images, labels, extractor, key, batch_size)
    results["fidelity"] = recon["fidelity"]
    results["reconstruction"] = {
        "reconstruction_class_flip_rate": recon["reconstruction_class_flip_rate"]}
  progress.update(1)
  out_dir = _output_dir(eval_root, loaded_step, settings)
  os.makedirs(out_dir, exist_ok=True)
  if family.generate is not None:
    samples = _samples(family, state, num_samples, jax.random.fold_in(key, 1), batch_size)
    progress.update(1)
    results["generation"], flags = _generation(samples, real_feats, extractor,
                                               jax.random.fold_in(key, 2))
    results["hallucination_figure"] = save_hallucination_figure(
        os.path.join(out_dir, "hallucinated.png"), samples, flags)
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
