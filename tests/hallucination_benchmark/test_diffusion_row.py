"""The benchmark's diffusion row: its exact rate and its own filter (Aithal et al.'s trajectory
variance) equal a direct computation on the same samples, and a variant the diffusion family
cannot train is an "n/a" row."""

import textwrap

import jax
import numpy as np
import pytest

from aigc_jax.data import gaussian_mixtures
from aigc_jax.evaluation import evaluators, filtering, sampling
from aigc_jax.hallucination_benchmark import datasets, measure, protocols, settings, tables, train
from aigc_jax.training import diffusion, multi_seed
from aigc_jax.training.family import get_family
from experiments.configs import hallucination_bases

NUM_SAMPLES = 300
STEPS = 300


@pytest.fixture(scope="module")
def trained():
  """A small ring diffusion model trained through the benchmark's multi-seed trainer, measured
  by `train.measure_state` as the benchmark measures a final model."""
  base = hallucination_bases.get_config("gaussian_ring8,diffusion")
  base.model.diffusion.sampling_steps = 20  # Fewer reverse steps: a faster test.
  base.train.batch_size = 256
  setting = settings.make_setting(
    "gaussian_ring8", "diffusion", "diffusion", base, (0,), STEPS, (STEPS,)
  )
  assert setting.unavailable == ""
  setup = measure.dataset_setup(
    datasets.load("gaussian_ring8"), None, NUM_SAMPLES, test_reference_size=300
  )
  train_x, train_y = setup.dataset.train
  family = get_family(setting.config, setup.dataset.spec.sample_shape)
  trainer = multi_seed.MultiSeedTrainer(family, train_x, train_y, 256, setting.seeds)
  states, _ = trainer.run(trainer.init(), STEPS)
  state = multi_seed.select_seed(states, 0)
  measured = train.measure_state(
    setting, family, state, setup, with_filtering=True, keep_samples=True
  )
  return setting, setup, family, state, measured


def _direct_samples_and_x0_hats(setting, state):
  """The sampler called directly, as the benchmark batches it (batch 0 holds all 300)."""
  sampler = diffusion.make_sampler(setting.config.model, (2,), 8)
  key = jax.random.fold_in(jax.random.PRNGKey(train.SAMPLE_KEY), 0)
  samples, x0_hats = sampler(state, key, train.GENERATE_BATCH, 10)
  return (
    np.asarray(samples, np.float64)[:NUM_SAMPLES],
    np.asarray(x0_hats, np.float64)[:, :NUM_SAMPLES],
  )


def test_the_rate_is_a_recount_of_the_samples(trained):
  setting, _, family, state, measured = trained
  direct, _ = _direct_samples_and_x0_hats(setting, state)
  # The ring's rule in float64: within 3 std (0.01) of one of the 8 modes on the unit circle.
  assert gaussian_mixtures.RING8.std == 0.01
  angles = 2 * np.pi * np.arange(8) / 8
  modes = np.stack([np.cos(angles), np.sin(angles)], axis=1)
  valid = np.linalg.norm(direct[:, None] - modes[None], axis=-1).min(axis=1) <= 3 * 0.01
  assert 0 < valid.sum() < NUM_SAMPLES  # Trained enough to make both kinds.
  rate = measured.groups["generation"]["exact"]["support_hallucination_rate"]
  assert rate["count"] == int(np.sum(~valid)) and rate["n"] == NUM_SAMPLES
  np.testing.assert_array_equal(measured.samples["generation"].samples, direct.astype(np.float32))
  np.testing.assert_array_equal(measured.samples["generation"].valid, valid)
  # They are the samples experiments.evaluate draws (sampling.generate), up to float32
  # rounding of a differently compiled program.
  generated = sampling.generate(
    family, state, NUM_SAMPLES, jax.random.PRNGKey(train.SAMPLE_KEY), train.GENERATE_BATCH
  )
  np.testing.assert_allclose(generated, direct, atol=1e-5)


def test_the_own_filter_is_the_variance_of_the_last_ten_predicted_clean_samples(trained):
  setting, setup, _, state, measured = trained
  _, x0_hats = _direct_samples_and_x0_hats(setting, state)
  assert x0_hats.shape == (10, NUM_SAMPLES, 2)
  # Aithal et al.'s score from its definition: minus the mean over coordinates of the
  # variance over the 10 steps.
  score = -np.mean(np.mean((x0_hats - x0_hats.mean(axis=0)) ** 2, axis=0), axis=1)
  np.testing.assert_allclose(filtering.trajectory_variance_score(x0_hats), score, rtol=1e-12)
  valid = measured.samples["generation"].valid
  expected = evaluators.filtering_summary({"trajectory_variance": score}, valid)
  got = measured.groups["generation"]["filtering"]["trajectory_variance"]
  assert got["removed_at_96"] == pytest.approx(expected["trajectory_variance"]["removed_at_96"])
  np.testing.assert_allclose(
    got["hallucinations_removed"], expected["trajectory_variance"]["hallucinations_removed"]
  )
  # The table shows it beside the other filters.
  record = {"checkpoints": {str(STEPS): [measured.groups]}, "seconds": 1.0}
  row = tables.setting_row(setting, record, setup)
  assert row["filter_trajectory_variance_removed_at_96"] == pytest.approx(got["removed_at_96"])
  assert "filter_realism_removed_at_96" in row and "filter_discriminator_removed_at_96" not in row


REFERENCE = """
from experiments.configs import base

def get_config():
  config = base.get_base_config()
  config.dataset.name = "digits28"
  config.model.family = "diffusion"
  return config
"""
CONDITIONAL = """
from experiments.configs import base

def get_config():
  config = base.get_base_config()
  config.dataset.name = "digits28"
  config.model.family = "diffusion"
  config.model.conditioning = "concat"
  config.model.diffusion.width = 256  # A network size: the ring's base keeps its own.
  return config
"""


def test_a_variant_the_diffusion_family_cannot_train_is_an_na_row(tmp_path):
  (tmp_path / "ddpm_digits.py").write_text(textwrap.dedent(REFERENCE))
  (tmp_path / "ddpm_cond_digits.py").write_text(textwrap.dedent(CONDITIONAL))
  plan = protocols.standard_plan(
    str(tmp_path),
    lambda d, f: hallucination_bases.get_config(f"{d},{f}"),
    only=["gaussian_ring8/ddpm_cond"],
    steps=10,
    seeds=1,
  )
  (setting,) = plan.settings
  assert setting.family == "diffusion" and setting.knobs == {"model.conditioning": "concat"}
  assert setting.unavailable.startswith("n/a: model.conditioning='concat' is the VAE's or GAN's")


def test_the_shapes_row_trains_the_unet_and_the_mixtures_the_mlp():
  rows = {
    dataset: settings.make_setting(
      dataset,
      "diffusion",
      "diffusion",
      hallucination_bases.get_config(f"{dataset},diffusion"),
      (0,),
      10,
      (10,),
    )
    for dataset in ("simple_shapes", "gaussian_grid25")
  }
  assert rows["simple_shapes"].unavailable == "" and rows["gaussian_grid25"].unavailable == ""
  assert rows["simple_shapes"].config.model.diffusion.denoiser == "unet"
  assert rows["gaussian_grid25"].config.model.diffusion.denoiser == "mlp"
  # A UNet cannot take points: that base would be refused in one line, not crash.
  points = hallucination_bases.get_config("gaussian_grid25,diffusion")
  points.model.diffusion.denoiser = "unet"
  refused = settings.make_setting(
    "gaussian_grid25", "diffusion", "diffusion", points, (0,), 10, (10,)
  )
  assert refused.unavailable.startswith("n/a: model.diffusion.denoiser='unet' takes images")
