"""AE / VAE on 2-D points (samples [N, 2], not images; the 2-D mixtures of issue 13):
`model.output_range = "unbounded"` leaves the Gaussian likelihood's mean unclipped, the step
matches numpy on points outside [0, 1], and MLP models learn a mixture of four modes."""
import jax
import numpy as np
import pytest

from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.training.family import get_family
from aigc_jax.training.noise import BATCH_AXIS
from experiments.configs import base
from tests.training import helpers
from tests.training import vae_cases as cases
from tests.training import vae_reference as ref

MODES = np.array([[2.0, 2.0], [2.0, -2.0], [-2.0, 2.0], [-2.0, -2.0]], np.float32)


def _points_config(family, likelihood="gaussian"):
  config = cases.tiny_mlp_config(family, likelihood)
  config.model.output_range = "unbounded"
  return config


def mixture_batches(num_batches, batch_size, seed):
  """Points of the four MODES (std 0.05), as `helpers.random_batches` lays out images."""
  rng = np.random.RandomState(seed)
  return [{"image": (MODES[rng.randint(0, 4, batch_size)]
                     + 0.05 * rng.randn(batch_size, 2)).astype(np.float32),
           "label": np.zeros(batch_size, np.int32), "mask": np.ones(batch_size, np.float32)}
          for _ in range(num_batches)]


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
  clipped = (ref.vae_terms(ref.to_float64(initial), x, eps, cases.BETA, nll, ref.unit_clip)
             if family == "vae" else ref.ae_terms(ref.to_float64(initial), x, x, nll,
                                                  ref.unit_clip))
  assert abs(clipped["mse"] - expected["mse"]) > 0.1  # The test can tell clipping apart.
  cases.assert_sgd_step_matches(initial, updated, lambda p: terms(p)["loss"])


@pytest.mark.parametrize("family", ["ae", "vae"])
def test_mlp_models_learn_a_mixture_of_2d_points(family):
  config = _points_config(family)
  config.model.encoder = base.body("mlp", (64, 64), "relu")
  config.model.decoder = base.body("mlp", (64, 64), "relu")
  config.model.likelihood_scale = 0.1
  config.model.beta = 1.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3
  state, metrics = helpers.run_steps(config, mixture_batches(250, 64, seed=0), helpers.pmap_on(2))
  assert metrics[-1]["loss"] < 0.05 * metrics[0]["loss"]
  points = mixture_batches(1, 400, seed=1)[0]["image"]
  reconstructions = np.asarray(get_family(config, (2,)).reconstruct(state, points, None))
  assert reconstructions.shape == (400, 2)
  # The modes sit at +-2: a mean clipped to [0, 1] would miss each by more than 1.
  assert np.mean(np.linalg.norm(reconstructions - points, axis=-1)) < 0.15


def test_seeds_train_at_once_under_vmap_and_scan_as_they_do_one_by_one():
  """What the hallucination benchmark does on 2-D sets: `jax.vmap` over seeds of the family's
  own train step (its batch axis a vmapped axis of size 1), `lax.scan` over steps; each seed
  ends where the loop's pmap path (`helpers.run_steps`, one device) ends."""
  config = _points_config("vae")
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-2
  batches = mixture_batches(4, 8, seed=0)
  stacked = {k: np.stack([b[k] for b in batches])[:, None] for k in batches[0]}  # [T, 1, B..]
  model = get_family(config, (2,))
  one_device_step = jax.vmap(model.train_step, in_axes=(0, 0, None), axis_name=BATCH_AXIS)

  def train(seed):
    state = jax.tree.map(lambda a: a[None], model.init(jax.random.PRNGKey(seed)))
    train_key = jax.random.PRNGKey(seed + 1)  # As helpers.run_steps.
    return jax.lax.scan(lambda s, batch: one_device_step(s, batch, train_key), state, stacked)

  seeds = np.arange(2)
  states, metrics = jax.jit(jax.vmap(train))(seeds)
  for i, seed in enumerate(seeds):
    alone, alone_metrics = helpers.run_steps(config, batches, helpers.pmap_on(1), seed=int(seed))
    assert helpers.max_abs_difference(jax.tree.map(lambda a: a[i, 0], states.params),
                                      alone.params) < 1e-5
    np.testing.assert_allclose(metrics["loss"][i, :, 0], [m["loss"] for m in alone_metrics],
                               rtol=1e-5)
  assert helpers.max_abs_difference(jax.tree.map(lambda a: a[0], states.params),
                                    jax.tree.map(lambda a: a[1], states.params)) > 1e-2


@pytest.mark.parametrize("output_range,likelihood,error,message", [
    ("unbounded", "bernoulli", ConfigError, "model.likelihood='bernoulli' models data in "
     r"\[0, 1\] only"),
    ("real", "gaussian", UnknownNameError,
     "Unknown output range 'real'; valid choices are: unbounded, unit."),
])
def test_bad_output_range_is_a_one_line_error(output_range, likelihood, error, message):
  config = cases.tiny_mlp_config("vae", likelihood)
  config.model.output_range = output_range
  with pytest.raises(error, match=message):
    get_family(config, (2,))
