"""Measuring one model on a known-support dataset: exact rates, estimated rates, filter scores.

Exact (the dataset's own rules, `DatasetSpec.support_check` / `reconstruction_check`):
* `support_hallucination_rate`: generated samples outside the support (mixtures: farther than
  3 standard deviations from every mode; simple_shapes: the parser finds something other
  than the allowed shapes, or an all-black image);
* `reconstruction_hallucination_rate` (AE / VAE): reconstructions of test inputs whose
  content differs from the input's (mixtures: another mode or off support; shapes: another
  parse);
* mixtures only: PacGAN's `modes_captured`, `high_quality_fraction`, `reverse_kl`.

Estimated (what a dataset without known support would have to use), each with its FLOOR, the
same estimator on held-out real data treated as generated (`datasets` module docstring):
* `manifold_k<k>_<reference>`: samples outside the k-NN manifold of the reference's features
  (1 - precision, Kynkaanniemi et al. 2019), k in `MANIFOLD_KS` with the test split as the
  reference, and k = 3 with the training split;
* `topp_test`: 1 - topological precision (Kim et al. 2023; `evaluation.topological`);
* `unrecognisable` (images): the class oracle's top probability is below 0.5;
* `reconstruction_class_flip` (AE / VAE, images): the oracle's class of the reconstruction
  differs from the input's label.
Features: the in-domain classifier's penultimate layer for images, the coordinates for points.

Filter scores (higher = keep), per generated sample: `realism` (the realism score of
Kynkaanniemi et al. 2019 against the test reference, k = 3), `confidence` (the oracle's top
probability, images) and, for GANs, `discriminator` (the trained discriminator's logit,
computed by `training`).
"""
import dataclasses
from typing import Any, Dict, Optional

import jax
import numpy as np

from aigc_jax.evaluation import filtering, hallucination, mode_collapse, topological
from aigc_jax.evaluation.features import FeatureExtractor, IdentityFeatureExtractor
from aigc_jax.hallucination_benchmark.datasets import KnownSupportData

MANIFOLD_KS = (1, 3, 5, 10)
TRAIN_REFERENCE_K = 3
UNRECOGNISABLE_THRESHOLD = 0.5
FILTER_VALID_KEPT = 0.96  # Aithal et al.'s operating point.
FILTER_CURVE_POINTS = 41  # Thresholds at these many quantiles of a model's scores.
POINTS_FAR_AWAY = 1e6  # Where non-finite generated points are put (invalid, off-manifold).


def rate_dict(estimate: hallucination.RateEstimate) -> Dict[str, float]:
  return estimate.as_dict()


def sanitize(samples, kind: str) -> np.ndarray:
  """Generated samples with NaN / Inf replaced: images 0 (then clipped to [0, 1]), points far
  away. A diverged model is then measured as hallucinating, not as an error."""
  samples = np.asarray(samples, np.float32)
  if kind == "points":
    return np.nan_to_num(samples, nan=POINTS_FAR_AWAY, posinf=POINTS_FAR_AWAY,
                         neginf=-POINTS_FAR_AWAY)
  return np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


@dataclasses.dataclass
class Reference:
  """Everything fixed per dataset: features of the reference sets, fitted supports, floors.

  Attributes:
    dataset: the `KnownSupportData`.
    extractor: classifier features and oracle (images) or the identity (points).
    num_samples: generated samples per model (also the size of each floor set).
    reference_feats: {"test": [N, D], "train": [N', D]} reference features.
    topp_support: the fitted topological support of the test reference.
    floors: {estimator: rate dict} of held-out real data treated as generated.
    real_rates: the exact rates (and mode metrics) of held-out real data treated as a model.
    classifier_accuracy: the oracle's accuracy on the test split (images), else None.
  """
  dataset: KnownSupportData
  extractor: FeatureExtractor
  num_samples: int
  reference_feats: Dict[str, Any]
  topp_support: Any
  key: Any
  floors: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
  real_rates: Dict[str, Any] = dataclasses.field(default_factory=dict)
  classifier_accuracy: Optional[float] = None

  @property
  def has_oracle(self) -> bool:
    return self.extractor.has_class_oracle

  def estimated_rates(self, samples: np.ndarray) -> Dict[str, Dict[str, float]]:
    """Every estimator's rate of `samples` (generated, or real for a floor)."""
    feats = self.extractor.features(samples)
    rates = {}
    for k in MANIFOLD_KS:
      rates[f"manifold_k{k}_test"] = rate_dict(hallucination.manifold_hallucination_rate(
          self.reference_feats["test"], feats, k=k)[0])
    rates[f"manifold_k{TRAIN_REFERENCE_K}_train"] = rate_dict(
        hallucination.manifold_hallucination_rate(self.reference_feats["train"], feats,
                                                  k=TRAIN_REFERENCE_K)[0])
    rates["topp_test"] = rate_dict(topological.topological_hallucination_rate(
        self.topp_support, feats, jax.random.fold_in(self.key, 1))[0])
    if self.has_oracle:
      rates["unrecognisable"] = rate_dict(hallucination.unrecognisable_rate(
          self.extractor.probabilities(samples), UNRECOGNISABLE_THRESHOLD)[0])
    return rates

  def filter_scores(self, samples: np.ndarray) -> Dict[str, np.ndarray]:
    """Model-agnostic filter scores of generated samples: realism and (images) confidence."""
    feats = self.extractor.features(samples)
    scores = {"realism": filtering.manifold_realism_score(self.reference_feats["test"], feats,
                                                          k=3)}
    if self.has_oracle:
      scores["confidence"] = filtering.classifier_confidence(
          self.extractor.probabilities(samples))
    return scores


def build_reference(dataset: KnownSupportData, extractor: Optional[FeatureExtractor],
                    num_samples: int, seed: int = 0,
                    test_reference_size: int = 2_500) -> Reference:
  """Features of the reference sets, the fitted TopP support, and every floor.

  Args:
    dataset: the dataset's arrays.
    extractor: the classifier extractor for images; None for points (identity features).
    num_samples: samples per model; each floor set has this many real samples (fewer when
      the held-out split is smaller).
    test_reference_size: size of the mixtures' test reference (their test split has 25,000).
  """
  extractor = extractor or IdentityFeatureExtractor()
  key = jax.random.PRNGKey(seed)
  refs, floor_sets = {}, {}
  for name in ("test", "train"):
    ref, floor_set = dataset.reference_and_floor(name, num_samples, test_reference_size)
    refs[name] = extractor.features(ref)
    floor_sets[name] = floor_set
  reference = Reference(dataset=dataset, extractor=extractor, num_samples=num_samples,
                        reference_feats=refs,
                        topp_support=topological.topological_support(refs["test"], key),
                        key=key)
  # Floors: each estimator on real data held out from ITS reference.
  rates_vs_test = reference.estimated_rates(floor_sets["test"][0])
  rates_vs_train = reference.estimated_rates(floor_sets["train"][0])
  reference.floors = {name: (rates_vs_train if name.endswith("_train") else rates_vs_test)[name]
                      for name in rates_vs_test}
  held_out_x, held_out_y = floor_sets["test"]
  reference.real_rates = exact_generation_rates(dataset, held_out_x)
  if reference.has_oracle:
    test_x, test_y = dataset.test
    probabilities = np.asarray(extractor.probabilities(test_x))
    reference.classifier_accuracy = float(np.mean(probabilities.argmax(-1) == test_y))
    # A perfect reconstruction is its input: the class-flip floor is the oracle's error.
    flip_probabilities = extractor.probabilities(held_out_x)
    reference.floors["reconstruction_class_flip"] = rate_dict(
        hallucination.reconstruction_class_flip_rate(flip_probabilities, held_out_y)[0])
  reference.real_rates["reconstruction_hallucination_rate"] = rate_dict(
      hallucination.rate_from_flags(~dataset.spec.reconstruction_check(held_out_x, held_out_x)))
  return reference


def exact_generation_rates(dataset: KnownSupportData, samples: np.ndarray
                           ) -> Dict[str, Any]:
  """The exact support-hallucination rate and, for mixtures, PacGAN's mode metrics."""
  estimate, flags = hallucination.support_hallucination_rate(samples,
                                                             dataset.spec.support_check)
  out: Dict[str, Any] = {"support_hallucination_rate": rate_dict(estimate),
                         "_valid": ~np.asarray(flags)}
  mixture = dataset.spec.mixture
  if mixture is not None:
    metrics = mode_collapse.mode_collapse_metrics(samples, mixture.means, mixture.stds)
    out.update({k: v for k, v in metrics.as_dict().items()})
  return out


def filtering_summary(scores: Dict[str, np.ndarray], valid: np.ndarray) -> Dict[str, Any]:
  """Per score: the curve at quantile thresholds and the operating point keeping 96% valid.

  Returns {score: {"valid_kept": [T], "hallucinations_removed": [T], "kept": [T],
  "removed_at_96": float or None, "threshold_at_96": float or None}}; None when there are
  no valid or no hallucinated samples (the operating point is then undefined).
  """
  out = {}
  for name, values in scores.items():
    values = np.nan_to_num(np.asarray(values, np.float64), nan=-np.inf)
    thresholds = np.quantile(values[np.isfinite(values)] if np.isfinite(values).any()
                             else [0.0], np.linspace(0.0, 1.0, FILTER_CURVE_POINTS))
    curve = filtering.filtering_curve(values, valid, np.append(thresholds, np.inf))
    summary = {"valid_kept": curve.valid_kept_fraction.tolist(),
               "hallucinations_removed": curve.hallucinations_removed_fraction.tolist(),
               "kept": curve.kept_fraction.tolist(), "removed_at_96": None,
               "threshold_at_96": None}
    if valid.any() and (~valid).any():
      threshold = filtering.threshold_keeping_valid(values, valid, FILTER_VALID_KEPT)
      point = filtering.filtering_curve(values, valid, [threshold])
      summary["removed_at_96"] = float(point.hallucinations_removed_fraction[0])
      summary["valid_kept_at_96"] = float(point.valid_kept_fraction[0])
      summary["threshold_at_96"] = threshold
    out[name] = summary
  return out


def measure_generation(reference: Reference, samples, extra_scores=None,
                       with_filtering: bool = True) -> Dict[str, Any]:
  """Exact and estimated rates (and filtering) of one model's generated samples.

  Args:
    samples: [N, *sample_shape] generated samples.
    extra_scores: {name: [N]} more filter scores (the GAN discriminator's).

  Returns:
    {"exact": {...}, "estimated": {estimator: rate dict}, "filtering": {...}} and "valid"
    ([N] bool, for figures).
  """
  samples = sanitize(samples, reference.dataset.spec.kind)
  exact = exact_generation_rates(reference.dataset, samples)
  valid = exact.pop("_valid")
  out = {"exact": exact, "estimated": reference.estimated_rates(samples), "valid": valid}
  if with_filtering:
    scores = reference.filter_scores(samples)
    scores.update(extra_scores or {})
    out["filtering"] = filtering_summary(scores, valid)
  return out


def measure_reconstruction(reference: Reference, inputs, labels, reconstructions
                           ) -> Dict[str, Any]:
  """Exact reconstruction rate and (images) the class-flip estimate of N reconstructions."""
  reconstructions = sanitize(reconstructions, reference.dataset.spec.kind)
  keeps = reference.dataset.spec.reconstruction_check(inputs, reconstructions)
  out = {"exact": {"reconstruction_hallucination_rate": rate_dict(
      hallucination.rate_from_flags(~np.asarray(keeps)))}, "estimated": {}}
  if reference.has_oracle:
    out["estimated"]["reconstruction_class_flip"] = rate_dict(
        hallucination.reconstruction_class_flip_rate(
            reference.extractor.probabilities(reconstructions), labels)[0])
  return out
