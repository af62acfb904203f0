"""beta-VAE and KL warm-up: the loss uses the beta of the config / of the schedule at the state's
step, recomputed in numpy float64; a resumed run continues the schedule."""

import json
import re

import jax
import numpy as np
import pytest

from aigc_jax import training
from aigc_jax.errors import ConfigError
from aigc_jax.training.family import get_family
from experiments.configs import vae_beta4_digits, vae_warmup_digits
from tests.training import helpers
from tests.training import vae_cases as cases
from tests.training import vae_reference as ref

WARMUP_STEPS = 10
WARMUP_START = 0.5
# beta_t = 0.5 + (2.5 - 0.5) * min(t / 10, 1), written out by hand.
SCHEDULED_BETA = {0: 0.5, 3: 1.1, 7: 1.9, 10: 2.5, 25: 2.5}


def _warmup_config():
  config = cases.tiny_mlp_config("vae")
  config.model.kl_warmup_steps = WARMUP_STEPS
  config.model.kl_warmup_start = WARMUP_START
  return config


@pytest.mark.parametrize("step", sorted(SCHEDULED_BETA))
def test_warmup_loss_uses_the_scheduled_beta_of_the_states_step(step):
  batch = cases.random_batch()
  initial, updated, metrics = cases.one_step(_warmup_config(), batch, start_step=step)
  x = batch["image"].astype(np.float64)
  eps = ref.step_noise(cases.TRAIN_KEY, step, range(cases.GLOBAL_BATCH), (cases.LATENT_DIM,))
  beta = SCHEDULED_BETA[step]
  expected = ref.vae_terms(
    ref.to_float64(initial), x, eps, beta, ref.bernoulli_nll, ref.bernoulli_mean
  )
  expected["beta"] = beta
  cases.assert_terms_match(metrics, expected)
  if step == 3:  # The gradient follows the scheduled beta too.
    cases.assert_sgd_step_matches(
      initial,
      updated,
      lambda p: ref.vae_terms(p, x, eps, beta, ref.bernoulli_nll, ref.bernoulli_mean)["loss"],
    )


def test_warmup_evaluation_uses_the_final_beta():
  config = _warmup_config()
  batch = cases.random_batch()
  family = get_family(config, cases.SHAPE)
  state = cases.initial_state(family)  # Step 0: training beta is 0.5.
  parallel = helpers.pmap_on(2)
  sums = parallel.first_copy(
    parallel.compile_eval_step(family.eval_step)(
      parallel.put_state(state),
      parallel.put_batch(helpers.device_layout(batch, 2)),
      cases.TRAIN_KEY,
    )
  )
  x = batch["image"].astype(np.float64)
  eps = np.stack(
    [
      np.asarray(
        jax.random.normal(jax.random.fold_in(cases.TRAIN_KEY, i), (cases.LATENT_DIM,)), np.float64
      )
      for i in range(cases.GLOBAL_BATCH)
    ]
  )  # Evaluation folds in no step.
  expected = ref.vae_terms(
    ref.to_float64(state.params), x, eps, cases.BETA, ref.bernoulli_nll, ref.bernoulli_mean
  )
  weight = float(sums.pop("weight"))
  cases.assert_terms_match({k: float(v) / weight for k, v in sums.items()}, expected)


def test_warmup_continues_where_a_resumed_run_stopped(tmp_path):
  """2 steps, then the same workdir to 5: steps 3-5 log beta of state steps 2-4, not 0-2."""
  config = helpers.tiny_config("vae")
  config.model.beta = 2.0
  config.model.kl_warmup_steps = 4
  config.model.kl_warmup_start = 0.0
  (tmp_path / "tfds").mkdir()  # config.dataset.data_dir must exist.
  config.dataset.data_dir = str(tmp_path / "tfds")
  config.train.log_every = 1
  config.train.eval_every = 0
  config.train.sample_every = 0
  config.checkpoint.keep_best = 0
  config.train.num_steps = 2
  training.train_and_evaluate(config, str(tmp_path / "run"))
  config.train.num_steps = 5
  training.train_and_evaluate(config, str(tmp_path / "run"))
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    rows = [r for r in map(json.loads, f) if r["split"] == "train"]
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
  # Loop step s runs on state step s - 1: beta = 2 * min((s - 1) / 4, 1).
  np.testing.assert_allclose([r["beta"] for r in rows], [0.0, 0.5, 1.0, 1.5, 2.0], atol=1e-6)


def test_beta_vae_config_loss_is_nll_plus_four_kl():
  """The `vae_beta4_digits` networks on one batch: loss == nll + 4 KL, in numpy float64."""
  config = vae_beta4_digits.get_config()
  assert config.model.beta == 4.0
  batch = cases.random_batch(shape=(28, 28, 1))
  initial, _, metrics = cases.one_step(config, batch)
  x = batch["image"].astype(np.float64)
  eps = ref.step_noise(cases.TRAIN_KEY, 0, range(cases.GLOBAL_BATCH), (config.model.latent_dim,))
  expected = ref.vae_terms(
    ref.to_float64(initial), x, eps, 4.0, ref.bernoulli_nll, ref.bernoulli_mean
  )
  cases.assert_terms_match(metrics, expected, rtol=2e-5)


def test_warmup_config_ramps_to_beta_over_a_third_of_training():
  config = vae_warmup_digits.get_config()
  assert config.model.kl_warmup_steps == config.train.num_steps // 3
  assert config.model.kl_warmup_start == 0.0 and config.model.beta == 1.0


@pytest.mark.parametrize(
  "family,steps,start,message",
  [
    ("ae", 5, 0.0, "model.kl_warmup_steps anneals the KL weight of the vae family"),
    ("vae", -1, 0.0, re.escape("model.kl_warmup_steps is -1 (allowed: an integer >= 0)")),
    ("vae", 5, -0.5, re.escape("model.kl_warmup_start is -0.5 (allowed: a finite number >= 0)")),
  ],
)
def test_bad_warmup_settings_are_one_line_errors(family, steps, start, message):
  config = cases.tiny_mlp_config(family)
  config.model.kl_warmup_steps = steps
  config.model.kl_warmup_start = start
  with pytest.raises(ConfigError, match=message):
    get_family(config, cases.SHAPE)
