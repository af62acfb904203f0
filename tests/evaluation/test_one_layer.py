"""One measurement layer: the same samples through `experiments.evaluate`'s measuring code
(`evaluation.report`) and the hallucination benchmark's (`hallucination_benchmark.measure`,
`tables`), with the same `Reference`, give identical numbers under identical names."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aigc_jax.data import gaussian_mixtures
from aigc_jax.evaluation import report
from aigc_jax.evaluation.features import FeatureExtractor
from aigc_jax.hallucination_benchmark import datasets, measure, settings, tables

NUM_SAMPLES = 400


class _PointOracle(FeatureExtractor):
  """Points are their own features; the class oracle is a softmax over the distances to the
  ring's modes (sharp near a mode, flat between two), so `unrecognisable_rate` is measured."""

  input_rank = 2
  input_layout = "[N, D]"

  def __init__(self):
    super().__init__(
      variables=jnp.asarray(gaussian_mixtures.RING8.means, jnp.float32), num_classes=8
    )

  def _features_batch(self, variables, points):
    return points

  def _probabilities_batch(self, variables, points):
    distances = jnp.linalg.norm(points[:, None] - variables[None], axis=-1)
    return jax.nn.softmax(-20.0 * distances, axis=-1)


def _planted(num, seed=0):
  """Real-looking points, a quarter of them halfway between two modes (invalid)."""
  rng = np.random.default_rng(seed)
  means = gaussian_mixtures.RING8.means
  points = (
    means[rng.integers(0, 8, num)] + gaussian_mixtures.RING8.std * rng.normal(size=(num, 2))
  ).astype(np.float32)
  points[: num // 4] = ((means[0] + means[1]) / 2).astype(np.float32)
  return points


def test_the_same_samples_measure_the_same_in_both_entry_points():
  setup = measure.dataset_setup(
    datasets.load("gaussian_ring8"), _PointOracle(), NUM_SAMPLES, test_reference_size=1_000
  )
  samples = _planted(NUM_SAMPLES)
  evaluated, _, _ = report.generation_results(setup.reference, samples, jax.random.PRNGKey(0))
  benchmarked = measure.measure_generation(setup, samples, with_filtering=False)
  rates = {
    name: value for name, value in evaluated.items() if isinstance(value, dict) and "rate" in value
  }
  assert set(rates) == {
    "manifold_hallucination_rate",
    "unrecognisable_rate",
    "support_hallucination_rate",
  }
  bench_rates = {**benchmarked.exact, **benchmarked.estimated}
  for name, value in rates.items():
    value = dict(value)
    floor = value.pop("floor")
    assert value == bench_rates[name], name
    assert floor == setup.reference.floors[name].as_dict(), name
  assert rates["support_hallucination_rate"]["count"] >= NUM_SAMPLES // 4
  assert rates["unrecognisable_rate"]["count"] >= NUM_SAMPLES // 4  # Halfway: two classes.
  collapse = evaluated["mode_collapse"]
  for name in tables.MODE_METRICS:
    assert collapse[name] == benchmarked.exact[name]
    assert collapse["floor"][name] == setup.reference.mode_floor[name]
  # The benchmark's results row carries the same numbers under the same names.
  setting = settings.Setting(
    dataset="gaussian_ring8",
    name="planted",
    family="gan",
    variant="",
    knobs={},
    config=_config(),
    seeds=(0,),
    checkpoints=(1,),
  )
  row = tables.setting_row(
    setting, {"checkpoints": {"1": [{"generation": benchmarked.record()}]}}, setup
  )
  for name, value in rates.items():
    assert row[name] == value["rate"] and row[f"{name}_floor"] == value["floor"]["rate"]


class _ShiftFamily:
  conditional = False

  @staticmethod
  def reconstruct(state, points, key):
    del state, key
    return points + np.asarray([0.0, 0.5], np.float32) * (points[:, :1] > 0)


def test_the_same_reconstructions_measure_the_same_in_both_entry_points():
  setup = measure.dataset_setup(
    datasets.load("gaussian_ring8"), _PointOracle(), NUM_SAMPLES, test_reference_size=1_000
  )
  reference = setup.reference
  _, evaluated, _ = report._reconstruction(  # pylint: disable=protected-access
    _ShiftFamily, None, reference, None, batch_size=128
  )
  outputs = _ShiftFamily.reconstruct(None, reference.held_out, None)
  benchmarked = measure.measure_reconstruction(
    setup, reference.held_out, reference.held_out_labels, outputs
  )
  bench_rates = {**benchmarked["exact"], **benchmarked["estimated"]}
  assert (
    set(evaluated)
    == set(bench_rates)
    == {"reconstruction_hallucination_rate", "reconstruction_class_flip_rate"}
  )
  for name, value in evaluated.items():
    value = dict(value)
    assert value.pop("floor") == reference.floors[name].as_dict()
    assert value == bench_rates[name], name
  assert 0 < evaluated["reconstruction_hallucination_rate"]["count"] < NUM_SAMPLES


def _config():
  config = ml_collections.ConfigDict()
  config.train = ml_collections.ConfigDict({"num_steps": 1})
  return config
