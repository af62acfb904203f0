"""Measurements of one model against the known truth: planted models, real data, floors,
filtering and the saved-result reuse."""

import dataclasses

import numpy as np
import pytest

from aigc_jax.data import gaussian_mixtures, simple_shapes
from aigc_jax.evaluation import evaluators, reference as reference_lib
from aigc_jax.hallucination_benchmark import datasets, measure, protocols, runner, tables
from experiments.configs import hallucination_bases

NUM_SAMPLES = 400


@pytest.fixture(scope="module")
def ring_reference():
  return measure.dataset_setup(
    datasets.load("gaussian_ring8"), None, NUM_SAMPLES, test_reference_size=1_000
  )


def _planted_ring(num, invalid_fraction, seed=0):
  """Points at the mode centres, except `invalid_fraction` of them halfway between two modes
  (0.38 from each: 38 standard deviations, exactly invalid)."""
  rng = np.random.default_rng(seed)
  means = gaussian_mixtures.RING8.means
  points = means[rng.integers(0, 8, num)].astype(np.float32)
  num_invalid = int(round(invalid_fraction * num))
  points[:num_invalid] = ((means[0] + means[1]) / 2).astype(np.float32)
  return points, num_invalid


def test_a_planted_model_is_measured_at_its_invalid_fraction(ring_reference):
  points, num_invalid = _planted_ring(NUM_SAMPLES, 0.15)
  measured = measure.measure_generation(ring_reference, points)
  exact = measured.exact
  assert exact["support_hallucination_rate"]["count"] == num_invalid
  assert exact["support_hallucination_rate"]["rate"] == pytest.approx(num_invalid / NUM_SAMPLES)
  assert exact["modes_captured"] == 8
  assert exact["high_quality_fraction"] == pytest.approx(1 - num_invalid / NUM_SAMPLES)
  # The manifold estimators see the same stray points: they lie outside every real k-NN ball.
  manifold = measured.estimated["manifold_hallucination_rate_k3_test"]
  assert manifold["count"] >= num_invalid
  # A filter whose score is the exact validity removes every hallucination at 96% kept.
  summary = evaluators.filtering_summary({"oracle": measured.valid.astype(float)}, measured.valid)[
    "oracle"
  ]
  assert summary["removed_at_96"] == 1.0 and summary["valid_kept_at_96"] >= 0.96
  # The realism score: stray points far from the ring have the lowest scores.
  realism = measured.filtering["realism"]
  assert realism["removed_at_96"] == 1.0


def test_real_data_as_a_model_measures_the_known_floors(ring_reference):
  reference = ring_reference.reference
  real = reference.floors["support_hallucination_rate"].as_dict()
  floor = 1.0 - gaussian_mixtures.TRUE_MIXTURE_VALID_FRACTION  # 0.0111: P(chi2_2 >= 9).
  assert real["ci_low"] <= floor <= real["ci_high"]
  # On the whole held-out test split the rate is within sampling error of 1 - (1 - e^-4.5).
  # (The exact evaluator alone: the estimators on the whole split cost minutes.)
  test_points = datasets.load("gaussian_ring8").test[0]
  whole = evaluators.sample_set(reference.extractor, test_points)
  rate = evaluators.support(reference, whole)["support_hallucination_rate"][0].as_dict()
  expected = 1.0 - gaussian_mixtures.TRUE_MIXTURE_VALID_FRACTION
  assert abs(rate["rate"] - expected) < 3 * np.sqrt(expected * (1 - expected) / len(test_points))
  # Every estimator has a floor, and the floor IS the estimator on held-out real data.
  assert set(reference.floors) == {
    "manifold_hallucination_rate_k1_test",
    "manifold_hallucination_rate_k3_test",
    "manifold_hallucination_rate_k5_test",
    "manifold_hallucination_rate_k10_test",
    "manifold_hallucination_rate",
    "topological_hallucination_rate_test",
    "support_hallucination_rate",
    "reconstruction_hallucination_rate",
  }
  ring = ring_reference.dataset
  _, (held_out, _) = reference_lib.real_sets(ring.train, ring.test, NUM_SAMPLES, 1_000)["test"]
  again = evaluators.variants(reference, evaluators.sample_set(reference.extractor, held_out))
  name = "manifold_hallucination_rate_k3_test"
  assert again[name][0].as_dict() == reference.floors[name].as_dict()
  assert 0.0 < reference.floors[name].as_dict()["rate"] < 0.1


def test_floor_sets_are_disjoint_from_their_references():
  ring = datasets.load("gaussian_ring8")
  for ref, (floor, _) in reference_lib.real_sets(ring.train, ring.test, 500, 1_000).values():
    common = set(map(tuple, ref.tolist())) & set(map(tuple, floor.tolist()))
    assert not common and len(floor) == 500


def test_shapes_exact_rates_of_real_and_planted_images():
  shapes = datasets.load("simple_shapes")
  images, labels = shapes.test
  reference = reference_lib.Reference(
    spec=shapes.spec,
    extractor=_NoOracle(),
    reference_split={},
    held_out_split={},
    reference_feats=np.zeros((1, 1)),
    held_out=images[:200],
    held_out_labels=labels[:200],
  )
  setup = measure.DatasetSetup(shapes, reference, 200)
  exact = lambda samples: evaluators.estimates(
    evaluators.support(reference, evaluators.SampleSet(samples, None, None))
  )
  valid = exact(images[:200])
  assert valid["support_hallucination_rate"].as_dict()["count"] == 0  # The floor is 0.
  planted = images[:200].copy()
  planted[:30, 5:11, simple_shapes.GUTTER_COLUMNS[0]] = 1.0  # A stroke in the gutter.
  planted[30:50] = 0.0  # All-black images are not in the support.
  rate = exact(planted)["support_hallucination_rate"].as_dict()
  assert rate["count"] == 50 and rate["rate"] == pytest.approx(0.25)
  # Why: 30 stray strokes and 20 blanks are rendering artifacts; 15 squares moved into the
  # triangle's region (another region's shape) are mode interpolation.
  start, stop = simple_shapes.REGION_COLUMNS[0]
  planted[50:65, :, start:stop] = 0.0
  planted[50:65, 4:10, start + 2 : start + 8] = 1.0
  counts = evaluators.invalid_kind_counts(reference, planted)
  assert counts["invalid"] == 65 and counts["n"] == 200
  assert counts["mode_interpolation"] == 15 and counts["reason_wrong_shape"] == 15
  assert counts["rendering_artifact"] == 50 and counts["mixed"] == 0
  assert counts["reason_stray"] == 30 and counts["reason_blank"] == 20
  assert evaluators.invalid_kind_counts(_ring_like(reference), planted) is None
  # The table pools the seeds' counts.
  other_seed = dict(counts, invalid=35, mode_interpolation=35, rendering_artifact=0)
  columns = tables.invalid_kind_columns([counts, other_seed])
  assert columns["invalid_count"] == 100
  assert columns["invalid_mode_interpolation_fraction"] == pytest.approx(0.5)
  assert columns["invalid_rendering_artifact_fraction"] == pytest.approx(0.5)
  # Reconstruction: identical copies keep content; a swapped image does not.
  recon = images[:200].copy()
  recon[:10] = images[100:110]
  changed = int(np.sum(np.any(images[:10] != images[100:110], axis=(1, 2, 3))))
  measured = measure.measure_reconstruction(setup, images[:200], labels[:200], recon)
  assert measured["exact"]["reconstruction_hallucination_rate"]["count"] == changed


class _NoOracle:
  has_class_oracle = False


def _ring_like(reference):
  """The reference with the ring's spec: no parser, so no kinds."""
  return dataclasses.replace(reference, spec=datasets.load("gaussian_ring8").spec)


def test_diverged_samples_count_as_hallucinations():
  points = np.full((4, 2), np.nan, np.float32)
  assert not gaussian_mixtures.RING8.support_check(measure.sanitize(points, "points")).any()
  images = measure.sanitize(np.full((2, 32, 32, 1), np.nan), "image")
  assert np.all(images == 0.0)  # All black: invalid (the parser rejects empty images).


def test_a_saved_setting_is_reused_only_for_the_same_config(tmp_path):
  base = lambda d, f: hallucination_bases.get_config(f"{d},{f}")
  plan = protocols.standard_plan(
    hallucination_bases.__file__.rsplit("/", 1)[0],
    base,
    only=["gaussian_ring8/vae"],
    steps=20,
    seeds=1,
  )
  (setting,) = plan.settings
  runner._save(str(tmp_path), setting, {"fingerprint": setting.fingerprint(), "x": 1})
  assert runner.load_saved(str(tmp_path), setting)["x"] == 1
  longer = protocols.standard_plan(
    hallucination_bases.__file__.rsplit("/", 1)[0],
    base,
    only=["gaussian_ring8/vae"],
    steps=30,
    seeds=1,
  ).settings[0]
  assert runner.load_saved(str(tmp_path), longer) is None


def test_filtering_table_reads_each_curve_at_the_kept_targets():
  """Removed at >= t valid kept: the best point of the curve that keeps enough, averaged
  over the models whose samples are both valid and hallucinated."""
  curve = {
    "valid_kept": [1.0, 0.99, 0.97, 0.95, 0.5, 0.0],
    "hallucinations_removed": [0.0, 0.2, 0.5, 0.9, 0.95, 1.0],
    "removed_at_96": 0.5,
  }
  assert tables.removed_at_kept(curve, 0.96) == 0.5
  assert tables.removed_at_kept(curve, 0.99) == 0.2
  assert tables.removed_at_kept(curve, 0.75) == 0.9
  other = dict(curve, hallucinations_removed=[0.0, 0.4, 0.7, 1.0, 1.0, 1.0])
  all_valid = dict(curve, removed_at_96=None)  # No hallucination: left out.
  setting = type("S", (), {"dataset": "d"})()
  record = {
    "checkpoints": {
      "5": [{"generation": {"filtering": {"realism": c}}} for c in (curve, other, all_valid)]
    }
  }
  (row,) = tables.filtering_rows([(setting, record)])
  assert row["models"] == 2 and row["score"] == "realism"
  assert row["removed_at_kept_0.96"] == pytest.approx(0.6)
  assert row["removed_at_kept_0.96_se"] == pytest.approx(np.std([0.5, 0.7], ddof=1) / np.sqrt(2))
