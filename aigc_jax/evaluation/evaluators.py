"""The evaluators: rates of a set of samples against a `Reference`, under canonical names.

Every hallucination rate the project reports is computed here, once, and named once; the
same names are the keys of `eval.json` (`experiments.evaluate`) and the columns of the
benchmark's `results.csv` / `calibration.csv`:

  manifold_hallucination_rate       samples outside the k = 3 k-NN manifold of the reference
                                    features (1 - precision, Kynkaanniemi et al. 2019)
  unrecognisable_rate               the class oracle's top probability is below 0.5
  support_hallucination_rate        outside the dataset's known support (exact)
  control_error_rate                a conditional sample is not of the requested class
  reconstruction_hallucination_rate a reconstruction's content differs from its input (exact)
  reconstruction_class_flip_rate    the oracle's class of a reconstruction is not the input's
  manifold_hallucination_rate_k<k>_test   the benchmark's variants: k in `MANIFOLD_KS`, the
  topological_hallucination_rate_test     test split as the reference (`reference.Variants`);
                                          TopP is 1 - topological precision (Kim et al. 2023)

A sample evaluator is a function `(reference, SampleSet) -> {name: (RateEstimate, flags)}`
(flags `[N]` bool, True = counted), looked up by name in `SAMPLE_EVALUATORS`; it returns {}
where it does not apply (no class oracle, no known support, not conditional, no variants).
`reconstruction_rates` and `filtering_summary` take their own inputs, and
`invalid_kind_counts` says why each invalid `simple_shapes` sample is invalid (counts by
Aithal et al.'s kind, mode interpolation or rendering artifact, and by the parser's reasons:
`shapes_invalid_kinds`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import numpy as np

from aigc_jax.data import shapes_parser
from aigc_jax.evaluation import (
  filtering,
  hallucination,
  mode_collapse,
  shapes_invalid_kinds,
  topological,
)
from aigc_jax.evaluation.features import FeatureExtractor

if TYPE_CHECKING:  # Only for the annotations: reference.py builds its floors with these.
  from aigc_jax.evaluation.reference import Reference

PRECISION_RECALL_K = 3  # Kynkaenniemi et al. 2019; the manifold rate's k.
MANIFOLD_KS = (1, 3, 5, 10)  # The benchmark's k-variants against the test reference.
UNRECOGNISABLE_THRESHOLD = 0.5
REALISM_K = 3
FILTER_VALID_KEPT = 0.96  # Aithal et al.'s operating point.
FILTER_CURVE_POINTS = 41  # Thresholds at these many quantiles of a model's scores.

Rates = Dict[str, Tuple[hallucination.RateEstimate, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class SampleSet:
  """Samples (generated, or real for a floor) with what the evaluators read of them.

  Attributes:
    samples: `[N, *sample_shape]` float32.
    feats: `[N, D]` features of the reference's extractor.
    probabilities: `[N, K]` class-oracle probabilities; None without an oracle.
    requested: `[N]` int32 classes asked of a conditional model; None otherwise.
  """

  samples: np.ndarray
  feats: jax.Array
  probabilities: Optional[jax.Array]
  requested: Optional[np.ndarray] = None


def sample_set(extractor: FeatureExtractor, samples, requested=None) -> SampleSet:
  """Features (and oracle probabilities) of `samples`, computed once for every evaluator."""
  samples = np.asarray(samples)
  probabilities = extractor.probabilities(samples) if extractor.has_class_oracle else None
  return SampleSet(samples, extractor.features(samples), probabilities, requested)


def manifold(reference: Reference, measured: SampleSet) -> Rates:
  """`manifold_hallucination_rate`: k = 3 against the reference subset's features."""
  return {
    "manifold_hallucination_rate": hallucination.manifold_hallucination_rate(
      reference.reference_feats, measured.feats, k=PRECISION_RECALL_K
    )
  }


def unrecognisable(reference: Reference, measured: SampleSet) -> Rates:
  """`unrecognisable_rate` (a class oracle is needed)."""
  del reference
  if measured.probabilities is None:
    return {}
  return {
    "unrecognisable_rate": hallucination.unrecognisable_rate(
      measured.probabilities, UNRECOGNISABLE_THRESHOLD
    )
  }


def support(reference: Reference, measured: SampleSet) -> Rates:
  """`support_hallucination_rate` (a dataset whose support is known exactly)."""
  if reference.spec.support_check is None:
    return {}
  estimate, flags = hallucination.support_hallucination_rate(
    measured.samples, reference.spec.support_check
  )
  return {"support_hallucination_rate": (estimate, np.asarray(flags))}


def control(reference: Reference, measured: SampleSet) -> Rates:
  """`control_error_rate` (a class oracle and requested classes are needed)."""
  del reference
  if measured.probabilities is None or measured.requested is None:
    return {}
  return {
    "control_error_rate": hallucination.control_error_rate(
      measured.probabilities, measured.requested
    )
  }


def variants(reference: Reference, measured: SampleSet) -> Rates:
  """The benchmark's estimator variants against the test reference (none without it)."""
  if reference.variants is None:
    return {}
  test_feats = reference.variants.test_feats
  rates = {
    f"manifold_hallucination_rate_k{k}_test": hallucination.manifold_hallucination_rate(
      test_feats, measured.feats, k=k
    )
    for k in MANIFOLD_KS
  }
  rates["topological_hallucination_rate_test"] = topological.topological_hallucination_rate(
    reference.variants.topp_support, measured.feats, jax.random.fold_in(reference.variants.key, 1)
  )
  return rates


SAMPLE_EVALUATORS: Dict[str, Callable[[Any, SampleSet], Rates]] = {
  "manifold": manifold,
  "unrecognisable": unrecognisable,
  "support": support,
  "control": control,
  "variants": variants,
}
# What `experiments.evaluate` measures of generated samples (the benchmark adds "variants").
GENERATION = ("manifold", "unrecognisable", "control", "support")


def sample_rates(
  reference: Reference, measured: SampleSet, evaluators: Sequence[str] = GENERATION
) -> Rates:
  """Every rate of the named sample evaluators, in their order."""
  rates: Rates = {}
  for name in evaluators:
    if name not in SAMPLE_EVALUATORS:
      raise KeyError(f"no evaluator {name!r}; there are {sorted(SAMPLE_EVALUATORS)}")
    rates.update(SAMPLE_EVALUATORS[name](reference, measured))
  return rates


def reconstruction_rates(
  reference: Reference, inputs: np.ndarray, labels: np.ndarray, outputs: np.ndarray
) -> Rates:
  """`reconstruction_hallucination_rate` (known support) and `reconstruction_class_flip_rate`
  (class oracle) of reconstructions `outputs` of `inputs` `[N, *sample_shape]`, labels `[N]`."""
  rates: Rates = {}
  check = reference.spec.reconstruction_check
  if check is not None:
    flags = ~np.asarray(check(inputs, outputs), bool)
    rates["reconstruction_hallucination_rate"] = (hallucination.rate_from_flags(flags), flags)
  if reference.extractor.has_class_oracle:
    rates["reconstruction_class_flip_rate"] = hallucination.reconstruction_class_flip_rate(
      reference.extractor.probabilities(outputs), labels
    )
  return rates


def mode_metrics(reference: Reference, samples: np.ndarray) -> Optional[Dict[str, Any]]:
  """PacGAN's modes captured / high-quality fraction / reverse KL on a Gaussian mixture
  (`mode_collapse.ModeCollapseMetrics.as_dict`); None on other datasets."""
  mixture = reference.spec.mixture
  if mixture is None:
    return None
  return mode_collapse.mode_collapse_metrics(samples, mixture.means, mixture.stds).as_dict()


def invalid_kind_counts(reference: Reference, samples: np.ndarray) -> Optional[Dict[str, int]]:
  """On `simple_shapes` (the parser's support rule), why each invalid sample of `samples`
  `[N, 32, 32, 1]` is invalid: image counts {"n", "invalid", "mode_interpolation",
  "rendering_artifact", "mixed", "reason_<reason>"} (`shapes_invalid_kinds.InvalidReasons
  .counts`; the three kinds are exclusive and sum to "invalid"); None on other datasets."""
  if reference.spec.support_check is not shapes_parser.support_check:
    return None
  return shapes_invalid_kinds.invalid_reasons(samples).counts()


def estimates(rates: Rates) -> Dict[str, hallucination.RateEstimate]:
  """The estimates of `rates`, flags dropped."""
  return {name: estimate for name, (estimate, _) in rates.items()}


def filter_scores(reference: Reference, measured: SampleSet) -> Dict[str, np.ndarray]:
  """Model-agnostic filter scores `[N]` (higher = keep): `realism` against the test reference
  (k = 3) and, with an oracle, `confidence` (its top probability)."""
  if reference.variants is None:
    raise ValueError(
      "filter scores need the test reference: build the Reference with "
      "variants (reference.build_reference(..., with_variants=True))."
    )
  scores = {
    "realism": filtering.manifold_realism_score(
      reference.variants.test_feats, measured.feats, k=REALISM_K
    )
  }
  if measured.probabilities is not None:
    scores["confidence"] = filtering.classifier_confidence(measured.probabilities)
  return scores


def filtering_summary(scores: Dict[str, np.ndarray], valid: np.ndarray) -> Dict[str, Any]:
  """Per score: the curve at quantile thresholds and the operating point keeping 96% valid.

  Returns {score: {"valid_kept": [T], "hallucinations_removed": [T], "kept": [T],
  "removed_at_96": float or None, "threshold_at_96": float or None}}; None when there are
  no valid or no hallucinated samples (the operating point is then undefined).
  """
  out = {}
  for name, values in scores.items():
    values = np.nan_to_num(np.asarray(values, np.float64), nan=-np.inf)
    thresholds = np.quantile(
      values[np.isfinite(values)] if np.isfinite(values).any() else [0.0],
      np.linspace(0.0, 1.0, FILTER_CURVE_POINTS),
    )
    curve = filtering.filtering_curve(values, valid, np.append(thresholds, np.inf))
    summary = {
      "valid_kept": curve.valid_kept_fraction.tolist(),
      "hallucinations_removed": curve.hallucinations_removed_fraction.tolist(),
      "kept": curve.kept_fraction.tolist(),
      "removed_at_96": None,
      "threshold_at_96": None,
    }
    if valid.any() and (~valid).any():
      threshold = filtering.threshold_keeping_valid(values, valid, FILTER_VALID_KEPT)
      point = filtering.filtering_curve(values, valid, [threshold])
      summary["removed_at_96"] = float(point.hallucinations_removed_fraction[0])
      summary["valid_kept_at_96"] = float(point.valid_kept_fraction[0])
      summary["threshold_at_96"] = threshold
    out[name] = summary
  return out
