"""The denoising AE: each corruption against a numpy reference on the documented per-example
noise, the loss scoring the reconstruction of the corrupted input against the CLEAN input,
and clean inputs in evaluation and reconstruction."""

import jax
import numpy as np
import pytest

from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.training import corruptions
from aigc_jax.training.family import get_family
from aigc_jax.training.noise import BATCH_AXIS
from experiments.configs import dae_digits
from tests.training import helpers
from tests.training import vae_cases as cases
from tests.training import vae_reference as ref

LEVELS = {"gaussian": 0.3, "masking": 0.4, "salt_and_pepper": 0.4}


def numpy_corruption(name, level, step_key, x):
  """Example i corrupted with draws from fold_in(step_key, i), in numpy float64."""
  draw = jax.random.normal if name == "gaussian" else jax.random.uniform
  u = ref.example_noise(step_key, range(len(x)), x.shape[1:], draw)
  x = x.astype(np.float64)
  if name == "gaussian":
    return x + level * u
  if name == "masking":
    return np.where(u < level, 0.0, x)
  return np.where(u < level / 2, 0.0, np.where(u < level, 1.0, x))  # salt_and_pepper


def _denoising_config(name, likelihood="bernoulli"):
  config = cases.tiny_mlp_config("ae", likelihood)
  config.model.corruption = name
  config.model.corruption_level = LEVELS[name]
  return config


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_corruption_of_a_batch_matches_numpy(name):
  """On 64 examples of 10x10 in (0.2, 0.8) split over 8 devices, and its corruption rates."""
  key = jax.random.PRNGKey(7)
  x = np.random.RandomState(0).uniform(0.2, 0.8, (64, 10, 10, 1)).astype(np.float32)
  corrupt = jax.pmap(
    lambda k, xs: corruptions.corrupt_batch(name, LEVELS[name], k, xs),
    axis_name=BATCH_AXIS,
    in_axes=(None, 0),
  )
  got = np.asarray(corrupt(key, x.reshape((8, 8) + x.shape[1:]))).reshape(x.shape)
  expected = numpy_corruption(name, LEVELS[name], key, x)
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
  changed = got != x
  if name == "gaussian":  # (x~ - x) / level ~ N(0, 1) over 6,400 draws.
    z = (got.astype(np.float64) - x) / LEVELS[name]
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05
  else:  # Each pixel replaced with probability level (x is never exactly 0 or 1 here).
    assert abs(changed.mean() - LEVELS[name]) < 0.03
    if name == "masking":
      assert np.all(got[changed] == 0)
    else:
      assert np.all(np.isin(got[changed], [0, 1]))
      assert abs(np.mean(got[changed] == 0) - 0.5) < 0.05  # Salt and pepper equally likely.


@pytest.mark.parametrize(
  "name,likelihood",
  [("gaussian", "gaussian"), ("masking", "bernoulli"), ("salt_and_pepper", "bernoulli")],
)
def test_denoising_step_scores_the_corrupted_inputs_reconstruction_against_the_clean_input(
  name, likelihood
):
  nll, mean_fn = cases.LIKELIHOODS[likelihood]
  batch = cases.random_batch()
  initial, updated, metrics = cases.one_step(
    _denoising_config(name, likelihood), batch, start_step=2
  )
  clean = batch["image"].astype(np.float64)
  corrupted = numpy_corruption(name, LEVELS[name], jax.random.fold_in(cases.TRAIN_KEY, 2), clean)
  assert np.mean(corrupted != clean) > 0.1

  def reference_loss(params):
    return ref.ae_terms(params, corrupted, clean, nll, mean_fn)["loss"]

  expected = ref.ae_terms(ref.to_float64(initial), corrupted, clean, nll, mean_fn)
  cases.assert_terms_match(metrics, expected)
  # Neither the plain AE's loss nor the loss against the corrupted target.
  params = ref.to_float64(initial)
  for wrong in (
    ref.ae_terms(params, clean, clean, nll, mean_fn)["loss"],
    ref.ae_terms(params, corrupted, corrupted, nll, mean_fn)["loss"],
  ):
    assert abs(wrong - expected["loss"]) > 1e-3 * abs(expected["loss"])
  cases.assert_sgd_step_matches(initial, updated, reference_loss)


def test_evaluation_and_reconstruction_use_clean_inputs():
  config = _denoising_config("masking")
  batch = cases.random_batch()
  family = get_family(config, cases.SHAPE)
  state = cases.initial_state(family)
  parallel = helpers.pmap_on(2)
  sums = parallel.first_copy(
    parallel.compile_eval_step(family.eval_step)(
      parallel.put_state(state),
      parallel.put_batch(helpers.device_layout(batch, 2)),
      cases.TRAIN_KEY,
    )
  )
  weight = float(sums.pop("weight"))
  x = batch["image"].astype(np.float64)
  params = ref.to_float64(state.params)
  expected = ref.ae_terms(params, x, x, ref.bernoulli_nll, ref.bernoulli_mean)
  cases.assert_terms_match({k: float(v) / weight for k, v in sums.items()}, expected)
  reconstruction = np.asarray(family.reconstruct(state, batch["image"], cases.TRAIN_KEY))
  code = ref.mlp(params["encoder"], x.reshape(len(x), -1))
  np.testing.assert_allclose(
    reconstruction.reshape(len(x), -1),
    ref.bernoulli_mean(ref.mlp(params["decoder"], code)),
    rtol=1e-5,
    atol=1e-6,
  )


def test_denoising_config_trains_with_masking_noise():
  config = dae_digits.get_config()
  assert config.model.family == "ae" and config.model.corruption == "masking"
  assert config.model.corruption_level == 0.25


@pytest.mark.parametrize(
  "family,name,level,error,message",
  [
    ("vae", "masking", 0.2, ConfigError, "applies to the ae family"),
    ("ae", "masking", 1.5, ConfigError, r"must be in \(0, 1\] for model.corruption='masking'"),
    ("ae", "salt_and_pepper", 0.0, ConfigError, r"must be in \(0, 1\]"),
    ("ae", "gaussian", 0.0, ConfigError, r"must be in \(0, inf\)"),
    (
      "ae",
      "dropout",
      0.2,
      UnknownNameError,
      "Unknown corruption 'dropout'; valid choices are: gaussian, masking, none, salt_and_pepper.",
    ),
  ],
)
def test_bad_corruption_settings_are_one_line_errors(family, name, level, error, message):
  config = cases.tiny_mlp_config(family)
  config.model.corruption = name
  config.model.corruption_level = level
  with pytest.raises(error, match=message):
    get_family(config, cases.SHAPE)
