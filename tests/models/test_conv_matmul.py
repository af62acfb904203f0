"""Convolutions as slices + one matrix product compute what lax's convolutions compute.

Values and gradients (input, kernel, bias) against `lax.conv_general_dilated` (through
`nn.Conv`) and `lax.conv_transpose` (through `nn.ConvTranspose`) in float32 and float64,
under `vmap` over seeds, and for the whole conv bodies with `conv_impl="matmul"`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import config_rules
from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.models import bodies, conv_matmul
from aigc_jax.models.conv_transpose import ConvTranspose
from aigc_jax.training.family import get_family
from aigc_jax.training.parallel import on_one_device
from tests.training import helpers

# (input shape, features, kernel size, strides, padding): kernels 3x3 / 4x4 / 5x5 (and a
# 1-D and a non-square one), strides 1 and 2, SAME, VALID and explicit asymmetric padding,
# odd and even sides, batch sizes 1 to 3.
CASES = [
  ((3, 14, 14, 5), 6, (4, 4), (2, 2), "SAME"),  # The conv bodies' form.
  ((2, 9, 7, 3), 4, (3, 3), (1, 1), "SAME"),
  ((2, 9, 7, 3), 4, (3, 3), (2, 2), "VALID"),
  ((1, 11, 11, 2), 3, (5, 5), (2, 2), "SAME"),
  ((2, 8, 9, 3), 2, (5, 5), (1, 1), "VALID"),
  ((2, 7, 7, 4), 3, (4, 4), (2, 2), ((1, 2), (2, 1))),
  ((2, 6, 5, 2), 3, (3, 2), (1, 2), ((0, 3), (1, 0))),
  ((3, 13, 4), 2, (5,), (2,), "SAME"),
]
DTYPES = {"float32": (jnp.float32, 2e-5), "float64": (jnp.float64, 1e-12)}


@pytest.fixture(params=sorted(DTYPES))
def dtype_and_tolerance(request):
  """The dtype and relative tolerance; float64 runs with x64 on, restored afterwards."""
  dtype, tolerance = DTYPES[request.param]
  if dtype == jnp.float64:
    with jax.enable_x64(True):
      yield dtype, tolerance
  else:
    yield dtype, tolerance


def _variables(rng, kernel_shape, features, dtype):
  return {
    "params": {
      "kernel": jnp.asarray(rng.standard_normal(kernel_shape), dtype),
      "bias": jnp.asarray(rng.standard_normal((features,)), dtype),
    }
  }


def _value_and_gradients(module, variables, x, cotangent):
  """`(y, d<y, cotangent>/d(variables, x))`: the input, kernel and bias gradients."""

  def pairing(variables, x):
    y = module.apply(variables, x)
    return jnp.sum(y * cotangent), y

  (_, y), grads = jax.jit(jax.value_and_grad(pairing, argnums=(0, 1), has_aux=True))(variables, x)
  return y, grads


def _assert_close(got, expected, tolerance):
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    assert g.shape == e.shape and g.dtype == e.dtype
    scale = max(float(np.max(np.abs(e))), 1.0)
    np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=0, atol=tolerance * scale)


def _check(plain, matmul, shape, kernel_shape, features, dtype, tolerance):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape), dtype)
  variables = _variables(rng, kernel_shape, features, dtype)
  expected_y = jax.jit(plain.apply)(variables, x)
  cotangent = jnp.asarray(rng.standard_normal(expected_y.shape), dtype)
  expected = _value_and_gradients(plain, variables, x, cotangent)
  got = _value_and_gradients(matmul, variables, x, cotangent)
  assert expected[0].dtype == dtype
  _assert_close(got, expected, tolerance)


@pytest.mark.parametrize("shape,features,kernel_size,strides,padding", CASES)
def test_conv_values_and_gradients_equal_lax(
  dtype_and_tolerance, shape, features, kernel_size, strides, padding
):
  dtype, tolerance = dtype_and_tolerance
  options = dict(strides=strides, padding=padding, dtype=dtype, param_dtype=dtype)
  plain = nn.Conv(features, kernel_size, **options)
  matmul = nn.Conv(
    features, kernel_size, conv_general_dilated=conv_matmul.conv_general_dilated, **options
  )
  kernel_shape = tuple(kernel_size) + (shape[-1], features)
  _check(plain, matmul, shape, kernel_shape, features, dtype, tolerance)


@pytest.mark.parametrize("shape,features,kernel_size,strides,padding", CASES)
def test_conv_transpose_values_and_gradients_equal_lax(
  dtype_and_tolerance, shape, features, kernel_size, strides, padding
):
  dtype, tolerance = dtype_and_tolerance
  options = dict(strides=strides, padding=padding, dtype=dtype, param_dtype=dtype)
  plain = nn.ConvTranspose(features, kernel_size, **options)
  matmul = ConvTranspose(features, kernel_size, implementation="matmul", **options)
  kernel_shape = tuple(kernel_size) + (shape[-1], features)
  _check(plain, matmul, shape, kernel_shape, features, dtype, tolerance)


def test_no_convolution_left_in_the_matmul_forms():
  """What the speed rests on: the jaxprs of values and gradients hold no convolution."""
  x = jnp.ones((2, 14, 14, 3))
  for module in (
    nn.Conv(4, (4, 4), strides=(2, 2), conv_general_dilated=conv_matmul.conv_general_dilated),
    ConvTranspose(4, (4, 4), strides=(2, 2), implementation="matmul"),
  ):
    variables = module.init(jax.random.PRNGKey(0), x)
    jaxpr = str(
      jax.make_jaxpr(jax.grad(lambda v, x, m=module: jnp.sum(m.apply(v, x) ** 2)))(variables, x)
    )
    assert "conv_general_dilated" not in jaxpr and "dot_general" in jaxpr


def test_vmap_over_seeds_equals_each_seed():
  """Three seeds' kernels and inputs vmapped together give each seed's values and gradients."""
  rng = np.random.default_rng(1)
  conv = nn.Conv(6, (4, 4), strides=(2, 2), conv_general_dilated=conv_matmul.conv_general_dilated)
  up = ConvTranspose(2, (4, 4), strides=(2, 2), implementation="matmul")
  x = jnp.asarray(rng.standard_normal((3, 2, 12, 12, 3)), jnp.float32)  # [seeds, B, H, W, C]

  def per_seed(variables, x):
    def loss(variables, x):
      y = up.apply(variables["up"], jax.nn.relu(conv.apply(variables["conv"], x)))
      return jnp.sum(y * jnp.cos(y)), y

    (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(variables, x)
    return y, grads

  variables = {
    "conv": _variables(rng, (3, 4, 4, 3, 6), 6, jnp.float32),
    "up": _variables(rng, (3, 4, 4, 6, 2), 2, jnp.float32),
  }
  for name in variables:  # One bias per seed: [3, features].
    variables[name]["params"]["bias"] = jnp.asarray(
      rng.standard_normal((3, variables[name]["params"]["kernel"].shape[-1])), jnp.float32
    )
  together = jax.jit(jax.vmap(per_seed))(variables, x)
  one_step = jax.jit(per_seed)
  for seed in range(3):
    alone = one_step(jax.tree.map(lambda v, s=seed: v[s], variables), x[seed])
    _assert_close(jax.tree.map(lambda v, s=seed: v[s], together), alone, 2e-5)


def _body_pair(body_class, conv_impl, **options):
  return body_class(**options), body_class(conv_impl=conv_impl, **options)


@pytest.mark.parametrize(
  "body_class,options,input_shape",
  [
    (bodies.ConvEncoder, dict(out_features=3, widths=(8, 16), norm="batch"), (4, 28, 28, 1)),
    (bodies.ConvEncoder, dict(out_features=1, widths=(8, 16), spectral_norm=True), (4, 32, 32, 2)),
    (bodies.ConvDecoder, dict(output_shape=(28, 28, 1), widths=(16, 8), norm="batch"), (4, 5)),
    (bodies.ConvDecoder, dict(output_shape=(32, 32, 3), widths=(16, 8, 4)), (4, 5)),
  ],
)
def test_conv_bodies_with_matmul_equal_xla(body_class, options, input_shape):
  xla, matmul = _body_pair(body_class, "matmul", **options)
  x = jax.random.normal(jax.random.PRNGKey(0), input_shape)
  variables = jax.jit(xla.init)(jax.random.PRNGKey(1), x)
  matmul_variables = jax.jit(matmul.init)(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(variables) == jax.tree.structure(matmul_variables)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(matmul_variables)):
    assert np.array_equal(a, b)  # Same names, shapes and initial values: checkpoints fit.

  def run(body):
    def loss(params, x):
      y, _ = body.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
      return jnp.sum(jnp.sin(y)), y

    (_, y), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
      variables["params"], x
    )
    return y, grads

  _assert_close(run(matmul), run(xla), 2e-5)


def test_conv_impl_knob_reaches_the_step_and_keeps_its_numbers():
  """`model.conv_impl="matmul"`: a GAN train step with no convolution, equal to "xla"'s.

  SGD with learning rate 1, so the new parameters differ by the gradients' difference (Adam
  would blow up the float noise of the biases that feed a BatchNorm, whose gradient is 0)."""
  batch = helpers.random_batches(1, 16)[0]
  results = {}
  for conv_impl in ("xla", "matmul"):
    config = helpers.tiny_config("gan", "conv")
    config.model.conv_impl = conv_impl
    config.optimizer.name, config.optimizer.learning_rate = "sgd", 1.0
    family = get_family(config, (28, 28, 1))
    state = jax.jit(family.init)(jax.random.PRNGKey(0))
    step = on_one_device(family.train_step)
    jaxpr = str(jax.make_jaxpr(step)(state, batch, jax.random.PRNGKey(1)))
    assert ("conv_general_dilated" in jaxpr) == (conv_impl == "xla")
    results[conv_impl] = jax.jit(step)(state, batch, jax.random.PRNGKey(1))
  _assert_close(results["matmul"], results["xla"], 1e-4)


def test_auto_is_matmul_on_cpu_only_and_bad_names_are_one_line(monkeypatch):
  assert conv_matmul.resolve_conv_impl("auto") == "matmul"  # The tests run on a CPU.
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert conv_matmul.resolve_conv_impl("auto") == "xla"
  assert conv_matmul.resolve_conv_impl("matmul") == "matmul"
  config = helpers.tiny_config("ae", "conv")
  config.model.conv_impl = "fast"
  with pytest.raises(
    ConfigError, match="model.conv_impl is 'fast' \\(allowed: one of xla, matmul, auto\\)"
  ):
    config_rules.check_config(config)
  with pytest.raises(UnknownNameError, match="fast"):
    bodies.ConvEncoder(out_features=2, conv_impl="fast").init(
      jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 1))
    )
