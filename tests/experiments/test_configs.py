"""Every experiment config trains for two steps (catalog datasets through tfds mock data).

UNet diffusion configs train with a small UNet and a 3-step sampler: at their own size (1 M
parameters, 50 DDIM steps per grid) compiling the step and the sampler took minutes on 2
cores, and two steps test the config's path (data, schedule, conditioning, sampler), not
the network's width (tests/training/test_diffusion_images.py tests the UNet)."""

import contextlib
import importlib
import json
import os
import pkgutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aigc_jax import training
from experiments import configs

CONFIG_NAMES = sorted(m.name for m in pkgutil.iter_modules(configs.__path__) if m.name != "base")


def test_there_is_a_config_for_each_family_on_digits_and_mnist():
  found = set()
  for name in CONFIG_NAMES:
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    found.add((config.model.family, config.dataset.name))
  for family in ("ae", "vae", "gan"):
    assert (family, "digits28") in found and (family, "mnist") in found, family


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """One tfds data_dir for every config: each offline dataset is prepared once."""
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_trains_two_steps(name, tmp_path, data_dir):
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  config.train.num_steps = 2
  config.train.log_every = 1
  # 16 examples per discriminator update (WGAN-GP's several updates split the batch).
  config.train.batch_size = 16 * config.model.gan.discriminator_steps
  config.train.eval_batch_size = 32
  config.train.num_samples = 4
  config.dataset.data_dir = data_dir
  if config.model.family == "diffusion" and config.model.diffusion.denoiser == "unet":
    diffusion = config.model.diffusion
    diffusion.channels, diffusion.channel_multipliers, diffusion.norm_groups = 8, (1, 2), 4
    diffusion.sampling_steps = 3
  offline = config.dataset.name.startswith("digits")  # Real data; the rest is mocked.
  with (
    contextlib.nullcontext()
    if offline
    else tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE)
  ):
    results = training.train_and_evaluate(config, str(tmp_path / "run"))
  assert all(np.isfinite(v) for v in results["train"].values())
  assert results["eval"] and all(np.isfinite(v) for v in results["eval"].values())
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    assert [json.loads(line)["step"] for line in f] == [1, 2, 2]
  family = training.family.get_family(
    config,
    (28, 28, 1) if "28" in config.dataset.name or "mnist" in config.dataset.name else (8, 8, 1),
  )
  if family.generate or family.reconstruct:
    assert os.listdir(tmp_path / "run" / "images")


def test_the_demo_logs_at_least_three_evaluations_and_image_grids():
  """The first TensorBoard a user opens shows curves, not points."""
  from aigc_jax.training.loop import _is_due
  from experiments.configs import vae_digits

  train = vae_digits.get_config().train
  for every in (train.eval_every, train.sample_every):
    assert sum(_is_due(s, every, train.num_steps) for s in range(1, train.num_steps + 1)) >= 3
