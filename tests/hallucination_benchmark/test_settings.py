"""Variant discovery from config files, knobs, and "n/a" rows found by building the family."""

import os
import shutil
import textwrap

import pytest

from aigc_jax.errors import ConfigError
from aigc_jax.hallucination_benchmark import protocols, settings
from aigc_jax.hallucination_benchmark import variants as variants_lib
from experiments.configs import hallucination_bases

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "configs")


def _base(dataset, family):
  return hallucination_bases.get_config(f"{dataset},{family}")


def test_knobs_of_the_shipped_variants():
  variants = {v.name: v for v in variants_lib.discover_variants(CONFIGS)}
  assert variants["gan_hinge"].knobs == {"model.gan.loss": "hinge"}
  assert variants["gan_hinge"].family == "gan"
  assert variants["wgan_gp"].knobs == {
    "model.encoder.norm": "none",
    "model.gan.discriminator_steps": 5,
    "model.gan.loss": "wasserstein",
    "model.gan.regularizer": "gradient_penalty",
    "optimizer.b1": 0.0,
    "optimizer.b2": 0.9,
    "optimizer.learning_rate": 1e-4,
  }
  assert variants["dae"].knobs == {"model.corruption": "masking", "model.corruption_level": 0.25}
  # References, classifiers and non-digits configs are not variants.
  for name in ("gan", "vae", "ae", "classifier", "pacgan_ring8", "mlp_vae", "dcgan28"):
    assert name not in variants


def test_network_sizes_are_not_knobs():
  reference = _base("simple_shapes", "vae")
  variant = hallucination_bases.get_config("simple_shapes,vae")
  variant.model.latent_dim = 99
  variant.model.encoder.widths = (7,)
  variant.model.decoder.body = "mlp"
  variant.model.beta = 2.0
  assert variants_lib.variant_knobs(variant, reference) == {"model.beta": 2.0}
  reference = _base("gaussian_ring8", "diffusion")
  variant = _base("gaussian_ring8", "diffusion")
  variant.model.diffusion.width = 256
  variant.model.diffusion.denoiser = "unet"
  variant.model.diffusion.sampler = "ddim"
  assert variants_lib.variant_knobs(variant, reference) == {"model.diffusion.sampler": "ddim"}


def test_a_new_config_file_becomes_a_new_row(tmp_path):
  """The benchmark is not edited: a variant file in the configs folder is a row, with its
  knobs applied on the dataset's base networks."""
  for name in ("gan_digits.py", "vae_digits.py"):
    shutil.copy(os.path.join(CONFIGS, name), tmp_path / name)
  (tmp_path / "gan_mine_digits.py").write_text(
    textwrap.dedent('''
      from experiments.configs import gan_digits

      def get_config():
        config = gan_digits.get_config()
        config.model.gan.loss = "hinge"
        config.model.gan.ema_decay = 0.99
        config.model.latent_dim = 64  # A network size: not carried over.
        return config
  ''')
  )
  plan = protocols.standard_plan(str(tmp_path), _base, only=["gaussian_ring8"], steps=10)
  rows = {s.name: s for s in plan.settings}
  assert set(rows) == {"ae", "vae", "gan", "diffusion", "gan_mine"}
  mine = rows["gan_mine"]
  assert mine.knobs == {"model.gan.ema_decay": 0.99, "model.gan.loss": "hinge"}
  assert mine.config.model.gan.loss == "hinge" and mine.config.model.gan.ema_decay == 0.99
  assert mine.config.model.latent_dim == 2  # The ring's base, not the digits' 64.
  assert mine.config.model.encoder.body == "maxout" and not mine.unavailable
  assert mine.checkpoints[-1] == 10 and mine.seeds == (0, 1, 2)


def test_a_variant_without_its_reference_is_one_line(tmp_path):
  shutil.copy(os.path.join(CONFIGS, "gan_hinge_digits.py"), tmp_path / "gan_hinge_digits.py")
  with pytest.raises(ConfigError, match="gan_digits.py .its reference. is not in"):
    variants_lib.discover_variants(str(tmp_path))


def test_variants_that_cannot_apply_say_why():
  """Found by building the family and tracing its step, with the ConfigError's own words."""
  diffaug = settings.make_setting(
    "gaussian_ring8",
    "gan_diffaug",
    "gan",
    _base("gaussian_ring8", "gan"),
    [0],
    10,
    [10],
    knobs={"model.gan.diff_augment": "translation"},
  )
  assert diffaug.unavailable.startswith("n/a: DiffAugment works on images")
  odd_batch = settings.make_setting(
    "simple_shapes",
    "d7",
    "gan",
    _base("simple_shapes", "gan"),
    [0],
    10,
    [10],
    knobs={"model.gan.discriminator_steps": 7},
  )
  assert odd_batch.unavailable.startswith("n/a: train.batch_size=60 is not divisible by 7")
  fine = settings.make_setting(
    "simple_shapes",
    "gan_diffaug",
    "gan",
    _base("simple_shapes", "gan"),
    [0],
    10,
    [10],
    knobs={"model.gan.diff_augment": "translation"},
  )
  assert fine.unavailable == ""


def test_checkpoints_and_pacgan_plan():
  assert settings.checkpoint_steps(1000, (0.05, 0.25, 1.0)) == (50, 250, 1000)
  assert settings.checkpoint_steps(10, (0.01, 0.5)) == (1, 5, 10)
  pacgan = hallucination_bases.pacgan_config
  plan = protocols.pacgan_plan(pacgan, steps=1000, trials=3, eval_every=300, pack_sizes=[1, 2])
  assert [s.key for s in plan.settings] == [
    "gaussian_ring8/gan",
    "gaussian_ring8/pacgan2",
    "gaussian_grid25/gan",
    "gaussian_grid25/pacgan2",
  ]
  pac2 = plan.settings[1]
  assert pac2.config.model.gan.pack_size == 2 and pac2.config.train.batch_size == 200
  assert pac2.checkpoints == (300, 600, 900, 1000) and pac2.seeds == (0, 1, 2)
  full = protocols.pacgan_plan(pacgan, only=["gaussian_grid25/pacgan4"])
  (setting,) = full.settings
  assert setting.config.train.num_steps == 400_000 and len(setting.seeds) == 10
  # The authors' networks and optimiser (not the standard protocol's narrower GAN).
  assert setting.config.optimizer.b1 == 0.8 and setting.config.optimizer.learning_rate == 1e-4
  assert setting.config.model.decoder.widths == (400, 400, 400, 400)
  assert setting.config.model.encoder.widths == (200, 200, 200)
  assert setting.config.model.encoder.pieces == 5 and setting.config.model.latent_dim == 2
  assert (
    setting.config.model.gan.loss == "non_saturating" and setting.config.train.batch_size == 400
  )
  assert setting.config.dataset.name == "gaussian_grid25"
  assert full.num_samples["gaussian_grid25"] == 2_500
