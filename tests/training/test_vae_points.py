"""AE / VAE on 2-D points (samples [N, 2], not images; the 2-D mixtures of issue 13):
`model.output_range = "unbounded"` leaves the Gaussian likelihood's mean unclipped, the step
matches numpy on points outside [0, 1], and MLP models learn the `gaussian_ring8` mixture."""

import numpy as np
import pytest

from aigc_jax.data import gaussian_mixtures
from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.training.family import get_family
from experiments.configs import base
from tests.training import helpers
from tests.training import vae_cases as cases
from tests.training import vae_reference as ref

RING8 = gaussian_mixtures.RING8  # 8 modes on the unit circle, standard deviation 0.01.


def _points_config(family, likelihood="gaussian"):
  config = cases.tiny_mlp_config(family, likelihood)
  config.model.output_range = "unbounded"
  return config


def ring8_batches(num_batches, batch_size, seed):
  """Batches of the `gaussian_ring8` training points (drawn with replacement), laid out as
  `helpers.random_batches` lays out images (the pipeline's key is "image" for points too)."""
  points, modes = gaussian_mixtures.split_points("ring8", "train")
  rng = np.random.RandomState(seed)
  batches = []
  for _ in range(num_batches):
    index = rng.randint(0, len(points), batch_size)
    batches.append(
      {
        "image": points[index],
        "label": modes[index].astype(np.int32),
        "mask": np.ones(batch_size, np.float32),
      }
    )
  return batches


@pytest.mark.parametrize("family", ["vae", "ae"])
def test_points_step_matches_numpy_with_unclipped_means(family):
  batch = cases.random_batch(shape=(2,), low=-3.0, high=3.0)
  initial, updated, metrics = cases.one_step(_points_config(family), batch)
  x = batch["image"].astype(np.float64)
  nll, identity = ref.gaussian_nll(cases.SCALE), lambda mean: mean
  if family == "vae":
    eps = ref.step_noise(cases.TRAIN_KEY, 0, range(cases.GLOBAL_BATCH), (cases.LATENT_DIM,))
    terms = lambda p: ref.vae_terms(p, x, eps, cases.BETA, nll, identity)
  else:
    terms = lambda p: ref.ae_terms(p, x, x, nll, identity)
  expected = terms(ref.to_float64(initial))
  cases.assert_terms_match(metrics, expected)
  clipped = (
    ref.vae_terms(ref.to_float64(initial), x, eps, cases.BETA, nll, ref.unit_clip)
    if family == "vae"
    else ref.ae_terms(ref.to_float64(initial), x, x, nll, ref.unit_clip)
  )
  mse = "mse_sampled_code" if family == "vae" else "mse"
  assert abs(clipped[mse] - expected[mse]) > 0.1  # The test can tell clipping apart.
  cases.assert_sgd_step_matches(initial, updated, lambda p: terms(p)["loss"])


@pytest.mark.parametrize("family", ["ae", "vae"])
def test_mlp_models_learn_the_ring8_mixture(family):
  """250 steps; the test points' reconstructions keep their mode (the dataset's own check)."""
  config = _points_config(family)
  config.dataset.name = "gaussian_ring8"
  config.model.encoder = base.body("mlp", (64, 64), "relu")
  config.model.decoder = base.body("mlp", (64, 64), "relu")
  config.model.likelihood_scale = 0.05
  config.model.beta = 1.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3
  state, metrics = helpers.run_steps(config, ring8_batches(250, 64, seed=0), helpers.pmap_on(2))
  assert metrics[-1]["loss"] < 0.05 * metrics[0]["loss"]
  points = gaussian_mixtures.split_points("ring8", "test")[0][:2000]
  reconstructions = np.asarray(get_family(config, (2,)).reconstruct(state, points, None))
  assert reconstructions.shape == (2000, 2)
  # Half the ring has negative coordinates: means clipped to [0, 1] would miss them by ~0.7.
  assert np.mean(np.linalg.norm(reconstructions - points, axis=-1)) < 0.05
  assert np.mean(RING8.nearest_mode(reconstructions)[0] == RING8.nearest_mode(points)[0]) > 0.98
  if family == "ae":  # Within 3 standard deviations (0.03) of the input's mode: 0.89 here.
    assert np.mean(RING8.reconstruction_check(points, reconstructions)) > 0.75


@pytest.mark.parametrize(
  "output_range,likelihood,error,message",
  [
    (
      "unbounded",
      "bernoulli",
      ConfigError,
      "model.likelihood='bernoulli' models data in "
      r"\[0, 1\] only",
    ),
    (
      "real",
      "gaussian",
      UnknownNameError,
      "Unknown output range 'real'; valid choices are: unbounded, unit.",
    ),
  ],
)
def test_bad_output_range_is_a_one_line_error(output_range, likelihood, error, message):
  config = cases.tiny_mlp_config("vae", likelihood)
  config.model.output_range = output_range
  with pytest.raises(error, match=message):
    get_family(config, (2,))
