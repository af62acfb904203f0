"""Measuring one model on a known-support dataset, through `aigc_jax.evaluation`.

The real sets, features and floors are the evaluation layer's `Reference`
(`evaluation.reference`, the same rule as `experiments.evaluate`'s, with the benchmark's
test-split variants); every rate is an `evaluation.evaluators` rate, under its canonical name.

Exact (the dataset's own rules): `support_hallucination_rate`,
`reconstruction_hallucination_rate` (AE / VAE), on the mixtures PacGAN's `modes_captured`,
`high_quality_fraction`, `reverse_kl`, and on simple_shapes `invalid_kinds`, the counts of
invalid samples by kind (mode interpolation, rendering artifact, mixed) and by reason
(`evaluators.invalid_kind_counts`).

Estimated (what a dataset without known support would have to use), each with its floor:
`manifold_hallucination_rate` (k = 3, training reference: `experiments.evaluate`'s),
`manifold_hallucination_rate_k<k>_test` (k in `evaluators.MANIFOLD_KS`, test reference),
`topological_hallucination_rate_test`, and for images `unrecognisable_rate` and (AE / VAE)
`reconstruction_class_flip_rate`. Features: the in-domain classifier's penultimate layer for
images, the coordinates for points.

Filter scores (higher = keep), per generated sample: `realism` (k = 3, test reference),
`confidence` (the oracle's top probability, images) and the model's own, computed by
`train`: for GANs `discriminator` (the trained discriminator's logit), for diffusion models
`trajectory_variance` (minus the variance of the predicted clean sample over the last 10
reverse steps, Aithal et al. 2024).
"""

import dataclasses
from typing import Any, Dict, Optional

import numpy as np

from aigc_jax.evaluation import evaluators
from aigc_jax.evaluation.features import FeatureExtractor, IdentityFeatureExtractor
from aigc_jax.evaluation.reference import Reference, build_reference
from aigc_jax.hallucination_benchmark.datasets import KnownSupportData

POINTS_FAR_AWAY = 1e6  # Where non-finite generated points are put (invalid, off-manifold).
TEST_REFERENCE_SIZE = 2_500  # Points of the mixtures' test reference (their test split: 25,000).
# The benchmark measures no control error: its conditional models are asked for every class in
# turn, and the calibration compares estimators of the support rate.
GENERATION_EVALUATORS = ("manifold", "unrecognisable", "support", "variants")


def sanitize(samples, kind: str) -> np.ndarray:
  """Generated samples with NaN / Inf replaced: images 0 (then clipped to [0, 1]), points far
  away. A diverged model is then measured as hallucinating, not as an error."""
  samples = np.asarray(samples, np.float32)
  if kind == "points":
    return np.nan_to_num(
      samples, nan=POINTS_FAR_AWAY, posinf=POINTS_FAR_AWAY, neginf=-POINTS_FAR_AWAY
    )
  return np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class DatasetSetup:
  """What is fixed per dataset in one benchmark run.

  Attributes:
    dataset: the `KnownSupportData` (training arrays for the models and latent GMMs).
    reference: the evaluation layer's `Reference` (held-out floor set of `num_samples`).
    num_samples: generated samples per model; also reconstructions per model.
  """

  dataset: KnownSupportData
  reference: Reference
  num_samples: int


def dataset_setup(
  dataset: KnownSupportData,
  extractor: Optional[FeatureExtractor],
  num_samples: int,
  test_reference_size: int = TEST_REFERENCE_SIZE,
) -> DatasetSetup:
  """The dataset's `Reference` with the benchmark's variants: `extractor` None for points
  (identity features); the test reference is `test_reference_size` points (images: the whole
  test split); the floor sets have `num_samples` examples."""
  points = dataset.spec.kind == "points"
  reference = build_reference(
    dataset.spec,
    dataset.train,
    dataset.test,
    extractor or IdentityFeatureExtractor(),
    floor_size=num_samples,
    with_variants=True,
    test_reference_size=test_reference_size if points else None,
  )
  return DatasetSetup(dataset, reference, num_samples)


@dataclasses.dataclass(frozen=True)
class GenerationMeasurement:
  """One model's generated samples, measured.

  Attributes:
    exact: {"support_hallucination_rate": rate dict, and the mode metrics on mixtures or
      "invalid_kinds" (image counts) on simple_shapes}.
    estimated: {estimator: rate dict}.
    valid: `[N]` bool, inside the known support (for figures; not saved in the record).
    filtering: {score: filtering summary} (`evaluators.filtering_summary`), or None.
  """

  exact: Dict[str, Any]
  estimated: Dict[str, Dict[str, float]]
  valid: np.ndarray
  filtering: Optional[Dict[str, Any]] = None

  def record(self) -> Dict[str, Any]:
    """The JSON part saved in a setting's file."""
    out = {"exact": self.exact, "estimated": self.estimated}
    if self.filtering is not None:
      out["filtering"] = self.filtering
    return out


def measure_generation(
  setup: DatasetSetup, samples, extra_scores=None, with_filtering: bool = True
) -> GenerationMeasurement:
  """Exact and estimated rates (and filtering) of one model's generated samples.

  Args:
    samples: [N, *sample_shape] generated samples (sanitized here).
    extra_scores: {name: [N]} more filter scores (the GAN discriminator's, the diffusion
      model's trajectory variance).
  """
  reference = setup.reference
  samples = sanitize(samples, reference.spec.kind)
  measured = evaluators.sample_set(reference.extractor, samples)
  rates = evaluators.sample_rates(reference, measured, GENERATION_EVALUATORS)
  support_estimate, flags = rates.pop("support_hallucination_rate")
  exact = {
    "support_hallucination_rate": support_estimate.as_dict(),
    **(evaluators.mode_metrics(reference, samples) or {}),
  }
  kinds = evaluators.invalid_kind_counts(reference, samples)
  if kinds is not None:
    exact["invalid_kinds"] = kinds
  valid = ~np.asarray(flags)
  filtering = None
  if with_filtering:
    scores = evaluators.filter_scores(reference, measured)
    scores.update(extra_scores or {})
    filtering = evaluators.filtering_summary(scores, valid)
  return GenerationMeasurement(
    exact=exact,
    valid=valid,
    filtering=filtering,
    estimated={name: e.as_dict() for name, e in evaluators.estimates(rates).items()},
  )


def measure_reconstruction(setup: DatasetSetup, inputs, labels, reconstructions) -> Dict[str, Any]:
  """{"exact": {reconstruction_hallucination_rate}, "estimated": {reconstruction_class_flip_rate
  (images)}} of N reconstructions of `inputs` `[N, ...]` with labels `[N]`."""
  reconstructions = sanitize(reconstructions, setup.reference.spec.kind)
  rates = evaluators.estimates(
    evaluators.reconstruction_rates(setup.reference, inputs, labels, reconstructions)
  )
  exact = {
    "reconstruction_hallucination_rate": rates.pop("reconstruction_hallucination_rate").as_dict()
  }
  return {"exact": exact, "estimated": {name: e.as_dict() for name, e in rates.items()}}
