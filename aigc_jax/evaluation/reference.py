"""The real data every measurement compares against, and each estimator's floor on it.

ONE rule chooses the real sets, for `experiments.evaluate` and the hallucination benchmark
alike (both call `build_reference`):

* reference set: a fixed random subset (seed `REFERENCE_SEED`, independent of any
  evaluation seed) of at most `REFERENCE_SIZE` = 10,000 examples of the training split, all
  of them when there are fewer. Its features are the real manifold of the k-NN metrics and
  of `manifold_hallucination_rate`. This is the rule the README's calibration of "the
  runner's default" estimator measured (`manifold_hallucination_rate`, k = 3, training
  reference), so the number calibrated is the number `experiments.evaluate` prints.
* held-out floor set: the test split (its first `floor_size` examples when given: the
  benchmark takes as many as it draws samples, so a rate and its floor have the same n),
  disjoint from the reference. Each estimator applied to it, real data treated as generated
  (what a perfect model would score), is that estimator's FLOOR; reconstructions are of
  this set too (a perfect reconstruction is its input, so the reconstruction floors are the
  rates of the set against itself).
* the benchmark's variants (`with_variants`): the test split as a second reference (its
  first `test_reference_size` examples) for `manifold_hallucination_rate_k<k>_test` and
  `topological_hallucination_rate_test`, and the realism filter; their floor set is the
  first `floor_size` training examples, disjoint from the test split.
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

import jax
import numpy as np

from aigc_jax.data.registry import DatasetSpec
from aigc_jax.evaluation import evaluators, hallucination, topological
from aigc_jax.evaluation.features import FeatureExtractor

REFERENCE_SIZE = 10_000  # Training examples, at most, in the reference set.
REFERENCE_SEED = 0
VARIANTS_SEED = 0  # TopP's bootstrap and its rate's key.

Split = Tuple[np.ndarray, np.ndarray]  # (samples [N, *sample_shape] float32, labels [N] int32)


def reference_subset(
  num_examples: int, size: int = REFERENCE_SIZE, seed: int = REFERENCE_SEED
) -> np.ndarray:
  """Sorted indices of `size` of `num_examples` examples chosen at random by `seed` (all of
  them, in order, when there are no more than `size`)."""
  if num_examples <= size:
    return np.arange(num_examples)
  return np.sort(np.random.default_rng(seed).choice(num_examples, size, replace=False))


def real_sets(
  train: Split,
  test: Split,
  floor_size: Optional[int] = None,
  test_reference_size: Optional[int] = None,
) -> Dict[str, Tuple[np.ndarray, Split]]:
  """The module's rule as arrays: {reference name: (reference samples, (floor samples, floor
  labels))}, "train" for the reference subset and its held-out floor set (the test split's
  first `floor_size`), "test" for the variants' test reference (the test split's first
  `test_reference_size`) and its floor set (the training split's first `floor_size`)."""
  (train_x, train_y), (test_x, test_y) = train, test
  subset = reference_subset(len(train_x))
  held = slice(0, floor_size)
  return {
    "train": (train_x[subset], (test_x[held], test_y[held])),
    "test": (test_x[:test_reference_size], (train_x[held], train_y[held])),
  }


@dataclasses.dataclass(frozen=True)
class Variants:
  """The benchmark's second reference: the test split.

  Attributes:
    test_feats: `[T, D]` features of the test reference.
    topp_support: its fitted `topological.TopologicalSupport`.
    key: the key of TopP's bootstrap; `fold_in(key, 1)` keys its rates.
  """

  test_feats: jax.Array
  topp_support: Any
  key: jax.Array


@dataclasses.dataclass(frozen=True)
class Reference:
  """The real sets of one dataset, their features and every estimator's floor.

  Attributes:
    spec: the dataset's `DatasetSpec` (support checks, mixture, kind).
    extractor: features and, with a class head, the class oracle (identity for points).
    reference_split: {"split", "n", "of"}: the reference subset, named in reports.
    held_out_split: {"split", "n"}: the held-out floor set.
    reference_feats: `[R, D]` features of the reference subset.
    held_out: `[M, *sample_shape]` float32, the held-out floor set (what is reconstructed).
    held_out_labels: `[M]` int32.
    floors: {rate name: RateEstimate}, each rate of the held-out floor set.
    mode_floor: the mode metrics of the held-out floor set (mixtures), else None.
    oracle_accuracy: the oracle's accuracy on the whole test split, or None.
    variants: the benchmark's test reference, or None.
  """

  spec: DatasetSpec
  extractor: FeatureExtractor
  reference_split: Dict[str, Any]
  held_out_split: Dict[str, Any]
  reference_feats: jax.Array
  held_out: np.ndarray
  held_out_labels: np.ndarray
  floors: Dict[str, hallucination.RateEstimate] = dataclasses.field(default_factory=dict)
  mode_floor: Optional[Dict[str, Any]] = None
  oracle_accuracy: Optional[float] = None
  variants: Optional[Variants] = None

  @property
  def feature_dim(self) -> int:
    return int(self.reference_feats.shape[-1])


def build_reference(
  spec: DatasetSpec,
  train: Split,
  test: Split,
  extractor: FeatureExtractor,
  *,
  floor_size: Optional[int] = None,
  with_variants: bool = False,
  test_reference_size: Optional[int] = None,
  train_split: str = "train",
  test_split: str = "test",
) -> Reference:
  """The reference subset, the held-out floor set and every floor, by the module's rule.

  Args:
    spec: the dataset's spec.
    train, test: (samples, labels) of the training and held-out splits.
    extractor: the features (and oracle) every rate is measured in.
    floor_size: examples of the held-out floor set (None: the whole test split).
    with_variants: also the benchmark's test reference and its estimators' floors.
    test_reference_size: examples of the test reference (None: the whole test split).
    train_split, test_split: the splits' names, for reports.
  """
  (train_x, _), (test_x, test_y) = train, test
  sets = real_sets(train, test, floor_size, test_reference_size)
  reference_x, (held_x, held_y) = sets["train"]
  reference = Reference(
    spec=spec,
    extractor=extractor,
    reference_split={"split": train_split, "n": int(len(reference_x)), "of": int(len(train_x))},
    held_out_split={"split": test_split, "n": int(len(held_x))},
    reference_feats=extractor.features(reference_x),
    held_out=held_x,
    held_out_labels=held_y,
  )
  if with_variants:
    key = jax.random.PRNGKey(VARIANTS_SEED)
    test_feats = extractor.features(sets["test"][0])
    reference = dataclasses.replace(
      reference,
      variants=Variants(test_feats, topological.topological_support(test_feats, key), key),
    )
  held_out = evaluators.sample_set(extractor, held_x, requested=held_y)
  rates = evaluators.sample_rates(reference, held_out, evaluators.GENERATION)
  rates.update(evaluators.reconstruction_rates(reference, held_x, held_y, held_x))
  if with_variants:
    rates.update(
      evaluators.variants(reference, evaluators.sample_set(extractor, sets["test"][1][0]))
    )
  oracle_accuracy = None
  if extractor.has_class_oracle:
    probabilities = (
      held_out.probabilities if len(held_x) == len(test_x) else extractor.probabilities(test_x)
    )
    oracle_accuracy = float(np.mean(np.argmax(np.asarray(probabilities), -1) == test_y))
  return dataclasses.replace(
    reference,
    floors=evaluators.estimates(rates),
    mode_floor=evaluators.mode_metrics(reference, held_x),
    oracle_accuracy=oracle_accuracy,
  )
