"""The reference networks have exactly the specified layers; bad names fail in one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.models import bodies
from aigc_jax.training.family import get_family
from experiments.configs import base, dcgan28, mlp_vae


def _param_shapes(params):
  return {
    jax.tree_util.keystr(path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
  }


def test_mlp_vae_is_784_400_20_400_784():
  state = get_family(mlp_vae.get_config(), (28, 28, 1)).init(jax.random.PRNGKey(0))
  shapes = _param_shapes(state.params)
  assert shapes == {
    "['encoder']['Dense_0']['kernel']": (784, 400),
    "['encoder']['Dense_0']['bias']": (400,),
    "['encoder']['Dense_1']['kernel']": (400, 40),
    "['encoder']['Dense_1']['bias']": (40,),
    "['decoder']['Dense_0']['kernel']": (20, 400),
    "['decoder']['Dense_0']['bias']": (400,),
    "['decoder']['Dense_1']['kernel']": (400, 784),
    "['decoder']['Dense_1']['bias']": (784,),
  }


def test_dcgan28_layers():
  state = get_family(dcgan28.get_config(), (28, 28, 1)).init(jax.random.PRNGKey(0))
  gen = _param_shapes(state.generator.params)
  disc = _param_shapes(state.discriminator.params)
  assert gen == {
    "['decoder']['Dense_0']['kernel']": (100, 7 * 7 * 128),
    "['decoder']['Dense_0']['bias']": (7 * 7 * 128,),
    "['decoder']['_Norm_0']['BatchNorm_0']['scale']": (7 * 7 * 128,),
    "['decoder']['_Norm_0']['BatchNorm_0']['bias']": (7 * 7 * 128,),
    "['decoder']['ConvTranspose_0']['kernel']": (4, 4, 128, 64),
    "['decoder']['ConvTranspose_0']['bias']": (64,),
    "['decoder']['_Norm_1']['BatchNorm_0']['scale']": (64,),
    "['decoder']['_Norm_1']['BatchNorm_0']['bias']": (64,),
    "['decoder']['ConvTranspose_1']['kernel']": (4, 4, 64, 1),
    "['decoder']['ConvTranspose_1']['bias']": (1,),
  }
  assert disc == {
    "['encoder']['Conv_0']['kernel']": (4, 4, 1, 64),
    "['encoder']['Conv_0']['bias']": (64,),
    "['encoder']['Conv_1']['kernel']": (4, 4, 64, 128),
    "['encoder']['Conv_1']['bias']": (128,),
    "['encoder']['_Norm_0']['BatchNorm_0']['scale']": (128,),
    "['encoder']['_Norm_0']['BatchNorm_0']['bias']": (128,),
    "['encoder']['Dense_0']['kernel']": (7 * 7 * 128, 1),
    "['encoder']['Dense_0']['bias']": (1,),
  }
  # Generator output is tanh-bounded and 28x28x1; the discriminator gives one logit each.
  z = jax.random.normal(jax.random.PRNGKey(1), (3, 100))
  images = state.generator.apply_fn(state.generator.variables(), z)
  assert images.shape == (3, 28, 28, 1) and float(jnp.max(jnp.abs(images))) <= 1.0
  logits = state.discriminator.apply_fn(state.discriminator.variables(), images)
  assert logits.shape == (3,)


def test_conv_decoder_rejects_sizes_it_cannot_make():
  config = base.get_base_config()
  config.model.decoder = base.body("conv", (32, 16, 8), "relu")  # 3 upsamplings: needs /8.
  with pytest.raises(ConfigError, match="divisible by 8, got 28x28"):
    get_family(config, (28, 28, 1)).init(jax.random.PRNGKey(0))


def test_unknown_activation_and_norm():
  with pytest.raises(UnknownNameError, match="Unknown activation 'gelu2'; valid choices are: "):
    bodies.MLPEncoder(4, activation="gelu2").init(jax.random.PRNGKey(0), np.zeros((1, 2)))
  with pytest.raises(UnknownNameError, match="Unknown norm 'layer'; valid choices are: batch"):
    bodies.MLPEncoder(4, norm="layer").init(jax.random.PRNGKey(0), np.zeros((1, 2)))


@pytest.mark.parametrize(
  "name,flax_init",
  [
    ("lecun_normal", jax.nn.initializers.lecun_normal()),
    ("normal_0.02", jax.nn.initializers.normal(stddev=0.02)),
  ],
)
def test_kernel_inits_are_flax_initialisers_bit_for_bit(name, flax_init):
  """The registered inits draw 4-D kernels as matrices (faster to compile): the same values as
  flax's initialisers give, for convolution and dense kernels."""
  init = bodies.KERNEL_INITS.get(name)()
  for shape in [(4, 4, 3, 5), (3, 3, 2, 1, 4), (7, 6)]:
    key = jax.random.PRNGKey(sum(shape))
    np.testing.assert_array_equal(init(key, shape), flax_init(key, shape))
