"""GAN networks' defining properties, against numpy: spectral norm, maxout, conditioning,
PacGAN packing, and the PacGAN authors' 2-D networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.errors import ConfigError
from aigc_jax.models import bodies
from aigc_jax.models.gan import Discriminator, Generator, pack
from aigc_jax.training.family import get_family
from experiments.configs import pacgan_ring8


def _init(module, *args, **kwargs):
  """`module.init` compiled (eager init dispatches op by op, slowly)."""
  return jax.jit(lambda key, *a: module.init(key, *a, **kwargs))(jax.random.PRNGKey(0), *args)


def _np(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _relu_mlp(layers, x, last_linear=True):
  for i, (kernel, bias) in enumerate(layers):
    x = x @ kernel + bias
    if i < len(layers) - 1 or not last_linear:
      x = np.maximum(x, 0.0)
  return x


def _dense_layers(params):
  return [
    (params[f"Dense_{i}"]["kernel"], params[f"Dense_{i}"]["bias"]) for i in range(len(params))
  ]


# ------------------------------------------------------------------ spectral normalisation


def _perturbed(variables, seed=0):
  """Params scaled and jittered, as training would leave them (far from their init norm)."""
  rng = np.random.RandomState(seed)
  params = jax.tree.map(
    lambda p: 3.0 * p + 0.5 * rng.randn(*p.shape).astype(np.float32), variables["params"]
  )
  return {"params": params, "batch_stats": variables["batch_stats"]}


def _power_iterations(module, variables, x, steps):
  """`steps` training-mode calls: each advances every layer's power iteration once."""
  advance = jax.jit(
    lambda v: {
      "params": v["params"],
      "batch_stats": module.apply(v, x, train=True, mutable=["batch_stats"])[1]["batch_stats"],
    }
  )
  for _ in range(steps):
    variables = advance(variables)
  return variables


def _stored_sigmas(batch_stats):
  """{layer name: sigma} from flax's `SpectralNorm_i/<layer>/kernel/sigma` entries."""
  return {
    name.split("/")[0]: float(value)
    for group in batch_stats.values()
    for name, value in group.items()
    if name.endswith("/sigma")
  }


@pytest.mark.parametrize("body", ["mlp", "conv"])
def test_spectrally_normalised_layers_have_largest_singular_value_one(body):
  if body == "mlp":
    module = bodies.MLPEncoder(1, widths=(7, 5), spectral_norm=True)
    x = jnp.ones((2, 6))
  else:
    module = bodies.ConvEncoder(1, widths=(4, 6), spectral_norm=True)
    x = jnp.ones((2, 8, 8, 3))
  variables = _perturbed(_init(module, x, train=False))
  variables = _power_iterations(module, variables, x, steps=60)
  sigmas = _stored_sigmas(variables["batch_stats"])
  kernels = {name: np.asarray(p["kernel"], np.float64) for name, p in variables["params"].items()}
  assert set(sigmas) == set(kernels)  # Every layer is normalised.
  for name, kernel in kernels.items():
    matrix = kernel.reshape(-1, kernel.shape[-1])  # Conv: [kh * kw * in, out].
    largest = np.linalg.svd(matrix, compute_uv=False)[0]
    assert largest > 1.5  # The raw weight is far from norm 1 ...
    # ... and divided by the estimate, its largest singular value is 1.
    np.testing.assert_allclose(
      np.linalg.svd(matrix / sigmas[name], compute_uv=False)[0], 1.0, rtol=1e-3, err_msg=name
    )


def test_spectral_norm_output_uses_the_normalised_weights_and_eval_leaves_the_state():
  module = bodies.MLPEncoder(1, widths=(5,), spectral_norm=True)
  x = np.random.RandomState(1).randn(4, 6).astype(np.float32)
  variables = _power_iterations(module, _perturbed(_init(module, x, train=False)), x, steps=60)
  params = _np(variables["params"])
  layers = [(k / np.linalg.svd(k, compute_uv=False)[0], b) for k, b in _dense_layers(params)]
  out, updates = module.apply(variables, x, train=False, mutable=["batch_stats"])
  np.testing.assert_allclose(out, _relu_mlp(layers, x.astype(np.float64)), rtol=1e-3, atol=1e-5)
  # Evaluation runs the iteration but stores nothing: the state is frozen.
  jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])


# ---------------------------------------------------------------------------------- maxout


def test_maxout_body_takes_the_max_of_consecutive_pieces():
  module = bodies.MaxoutEncoder(3, widths=(4, 5), pieces=3)
  x = np.random.RandomState(2).randn(6, 2, 2, 1).astype(np.float32)
  variables = _init(module, x)
  params = _np(variables["params"])
  h = x.reshape(6, -1).astype(np.float64)
  for i, width in enumerate((4, 5)):
    linear = h @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"]
    h = np.stack([linear[:, k * 3 : (k + 1) * 3].max(axis=1) for k in range(width)], axis=1)
  want = h @ params["Dense_2"]["kernel"] + params["Dense_2"]["bias"]
  np.testing.assert_allclose(module.apply(variables, x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  "options,message",
  [
    (dict(activation="relu"), "set activation='maxout'"),
    (dict(norm="batch"), "and norm='none'"),
  ],
)
def test_maxout_body_refuses_what_it_cannot_do(options, message):
  with pytest.raises(ConfigError, match=message):
    bodies.MaxoutEncoder(1, **options).init(jax.random.PRNGKey(0), jnp.ones((1, 2)))


def test_bias_before_norm_false_needs_a_norm():
  with pytest.raises(ConfigError, match="norm is 'none'; set norm='batch'"):
    bodies.MLPDecoder((2,), bias_before_norm=False).init(jax.random.PRNGKey(0), jnp.ones((1, 2)))


# ------------------------------------------------------------------------------ conditioning


def test_concat_generator_feeds_z_with_the_one_hot_label_and_changes_with_it():
  generator = Generator(bodies.MLPDecoder((2, 2, 1), widths=(6,)), num_classes=4)
  z = np.random.RandomState(3).randn(5, 3).astype(np.float32)
  labels = np.array([0, 1, 2, 3, 1], np.int32)
  variables = _init(generator, z, labels)
  layers = _dense_layers(_np(variables["params"])["decoder"])
  joined = np.concatenate([z, np.eye(4)[labels]], axis=1)
  want = np.tanh(_relu_mlp(layers, joined)).reshape(5, 2, 2, 1)
  np.testing.assert_allclose(generator.apply(variables, z, labels), want, rtol=1e-5, atol=1e-6)
  other = generator.apply(variables, z, (labels + 1) % 4)
  assert np.min(np.abs(np.asarray(other) - want).reshape(5, -1).max(axis=1)) > 1e-3


def test_concat_discriminator_sees_the_label_as_constant_extra_channels():
  discriminator = Discriminator(bodies.MLPEncoder(1, widths=(5,)), "concat", num_classes=3)
  x = np.random.RandomState(4).randn(4, 2, 2, 1).astype(np.float32)
  labels = np.array([2, 0, 1, 2], np.int32)
  variables = _init(discriminator, x, labels)
  channels = np.concatenate(
    [x, np.broadcast_to(np.eye(3)[labels][:, None, None, :], (4, 2, 2, 3))], axis=-1
  )
  layers = _dense_layers(_np(variables["params"])["encoder"])
  np.testing.assert_allclose(
    discriminator.apply(variables, x, labels),
    _relu_mlp(layers, channels.reshape(4, -1))[:, 0],
    rtol=1e-5,
    atol=1e-6,
  )


def test_projection_discriminator_logit_is_psi_of_phi_plus_the_class_projection():
  encoder = bodies.MLPEncoder(4, widths=(5,))
  discriminator = Discriminator(encoder, "projection", num_classes=3, feature_dim=4)
  x = np.random.RandomState(5).randn(6, 3).astype(np.float32)
  labels = np.array([0, 1, 2, 2, 1, 0], np.int32)
  variables = _init(discriminator, x, labels)
  params = _np(variables["params"])
  phi = _relu_mlp(_dense_layers(params["encoder"]), x.astype(np.float64))  # [6, 4]
  psi = phi @ params["psi"]["kernel"][:, 0] + params["psi"]["bias"][0]
  projection = np.sum(params["class_embedding"]["embedding"][labels] * phi, axis=1)
  np.testing.assert_allclose(
    discriminator.apply(variables, x, labels), psi + projection, rtol=1e-5, atol=1e-6
  )
  assert np.abs(projection).max() > 1e-2


# ----------------------------------------------------------------------------------- packing


@pytest.mark.parametrize("shape", [(2,), (3, 2, 2)])
def test_a_pack_is_the_concatenation_of_its_consecutive_samples(shape):
  samples = np.random.RandomState(6).randn(6, *shape).astype(np.float32)
  packed = np.asarray(pack(samples, 3))
  assert packed.shape == (2,) + shape[:-1] + (3 * shape[-1],)
  for p in range(2):
    np.testing.assert_array_equal(
      packed[p], np.concatenate([samples[3 * p + j] for j in range(3)], axis=-1)
    )


# ------------------------------------------------------------------ the PacGAN 2-D networks


def _param_shapes(params):
  return {
    jax.tree_util.keystr(path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
  }


@pytest.mark.parametrize("pack_size", [1, 2])
def test_pacgan_networks_are_the_authors(pack_size):
  config = pacgan_ring8.get_config()
  config.model.gan.pack_size = pack_size
  config.train.batch_size = 100 * pack_size
  state = jax.jit(get_family(config, (2,)).init)(jax.random.PRNGKey(0))
  gen, disc = _param_shapes(state.generator.params), _param_shapes(state.discriminator.params)
  want_gen = {}
  for i, fan_in in enumerate((2, 400, 400, 400)):  # Linear without bias -> BatchNorm -> ReLU.
    want_gen[f"['decoder']['Dense_{i}']['kernel']"] = (fan_in, 400)
    want_gen[f"['decoder']['_Norm_{i}']['BatchNorm_0']['scale']"] = (400,)
    want_gen[f"['decoder']['_Norm_{i}']['BatchNorm_0']['bias']"] = (400,)
  want_gen["['decoder']['Dense_4']['kernel']"] = (400, 2)
  want_gen["['decoder']['Dense_4']['bias']"] = (2,)
  assert gen == want_gen
  assert disc == {  # 3 x maxout(200 units, 5 pieces) on 2 * m inputs -> Linear 1.
    "['encoder']['Dense_0']['kernel']": (2 * pack_size, 1000),
    "['encoder']['Dense_0']['bias']": (1000,),
    "['encoder']['Dense_1']['kernel']": (200, 1000),
    "['encoder']['Dense_1']['bias']": (1000,),
    "['encoder']['Dense_2']['kernel']": (200, 1000),
    "['encoder']['Dense_2']['bias']": (1000,),
    "['encoder']['Dense_3']['kernel']": (200, 1),
    "['encoder']['Dense_3']['bias']": (1,),
  }
  # Weights N(0, 0.02^2), biases 0, BatchNorm scale 1; no batch statistics in D.
  kernels = np.concatenate(
    [
      np.asarray(p["kernel"]).ravel()
      for network in (state.generator.params["decoder"], state.discriminator.params["encoder"])
      for name, p in network.items()
      if name.startswith("Dense")
    ]
  )
  assert abs(np.std(kernels) - 0.02) < 0.0005 and abs(np.mean(kernels)) < 0.0005
  for leaf in jax.tree.leaves({k: v for k, v in state.discriminator.params["encoder"].items()}):
    if leaf.ndim == 1:
      np.testing.assert_array_equal(leaf, 0.0)
  assert not state.discriminator.batch_stats
  # Points: the output layer is linear, no tanh bound and no [0, 1] mapping.
  decoder = dict(state.generator.params["decoder"])
  decoder["Dense_4"] = {"kernel": decoder["Dense_4"]["kernel"], "bias": np.array([5.0, -7.0])}
  state = state.replace(generator=state.generator.replace(params={"decoder": decoder}))
  samples = np.asarray(get_family(config, (2,)).generate(state, jax.random.PRNGKey(1), 8))
  np.testing.assert_allclose(samples.mean(axis=0), [5.0, -7.0], atol=0.5)
