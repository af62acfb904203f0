"""The custom-VJP ConvTranspose computes what flax's computes: values, gradients, GAN steps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.models import bodies
from aigc_jax.models.conv_transpose import ConvTranspose
from tests.training import helpers

# (input shape, features, kernel size, strides, padding): 1-D and 2-D, strides 1 to 3, even
# and odd kernels, padding SAME, VALID and explicit (asymmetric, and larger than the kernel
# reaches), batch sizes 1 to 3 and a doubled batch axis.
CASES = [
  ((3, 7, 7, 5), 4, (4, 4), (2, 2), "SAME"),  # The dcgan28 layer's form.
  ((1, 7, 7, 16), 8, (4, 4), (2, 2), "SAME"),
  ((2, 5, 6, 3), 2, (3, 3), (1, 1), "VALID"),
  ((2, 5, 6, 3), 2, (3, 3), (2, 2), "VALID"),
  ((2, 5, 6, 3), 6, (3, 2), (2, 1), "SAME"),
  ((2, 5, 6, 3), 2, (4, 4), (2, 2), ((1, 2), (0, 3))),
  ((2, 4, 4, 2), 3, (2, 2), (2, 2), ((4, 4), (5, 0))),
  ((3, 9, 4), 3, (5,), (3,), "SAME"),
  ((2, 2, 5, 5, 3), 4, (4, 4), (2, 2), "SAME"),  # Two batch axes (flax flattens them).
]


def _init_both(shape, features, kernel_size, strides, padding, **kwargs):
  """Input, both modules and one set of variables (random, nonzero bias) for both."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  plain = nn.ConvTranspose(features, kernel_size, strides=strides, padding=padding, **kwargs)
  fast = ConvTranspose(features, kernel_size, strides=strides, padding=padding, **kwargs)
  kernel_shape = tuple(kernel_size) + (
    (features, shape[-1]) if kwargs.get("transpose_kernel") else (shape[-1], features)
  )
  variables = {
    "params": {
      "kernel": jnp.asarray(rng.standard_normal(kernel_shape), jnp.float32),
      "bias": jnp.asarray(rng.standard_normal((features,)), jnp.float32),
    }
  }
  return x, plain, fast, variables, variables


def test_same_parameters_and_initialisation_as_flax():
  x = jnp.ones((2, 7, 7, 16))
  plain = nn.ConvTranspose(8, (4, 4), strides=(2, 2), padding="SAME")
  fast = ConvTranspose(8, (4, 4), strides=(2, 2), padding="SAME")
  plain_vars = jax.jit(plain.init)(jax.random.PRNGKey(1), x)
  fast_vars = jax.jit(fast.init)(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(plain_vars) == jax.tree.structure(fast_vars)
  for a, b in zip(jax.tree.leaves(plain_vars), jax.tree.leaves(fast_vars)):
    assert a.shape == b.shape and np.array_equal(a, b)
  # Inside a parent module it is auto-named like flax's: checkpoints keep their keys.
  decoder = bodies.ConvDecoder(output_shape=(28, 28, 1), widths=(16, 8))
  params = jax.eval_shape(decoder.init, jax.random.PRNGKey(0), jnp.ones((1, 4)))["params"]
  assert {"ConvTranspose_0", "ConvTranspose_1"} <= set(params)


def _gradients(module, variables, x, cotangent):
  def loss(variables, x):
    return jnp.sum(module.apply(variables, x) * cotangent)

  return jax.jit(jax.grad(loss, argnums=(0, 1)))(variables, x)


@pytest.mark.parametrize("shape,features,kernel_size,strides,padding", CASES)
def test_forward_bit_identical_and_gradients_equal(shape, features, kernel_size, strides, padding):
  x, plain, fast, plain_vars, fast_vars = _init_both(shape, features, kernel_size, strides, padding)
  assert fast.uses_fast_backward()
  expected = jax.jit(plain.apply)(plain_vars, x)
  got = jax.jit(fast.apply)(fast_vars, x)
  assert expected.shape == got.shape
  assert np.array_equal(np.asarray(expected), np.asarray(got))  # Bit-identical.

  cotangent = jax.random.normal(jax.random.PRNGKey(2), expected.shape)
  expected = _gradients(plain, plain_vars, x, cotangent)
  got = _gradients(fast, fast_vars, x, cotangent)
  for name, e, g in zip(
    ["bias", "kernel", "input"], jax.tree.leaves(expected), jax.tree.leaves(got)
  ):
    scale = float(np.max(np.abs(e)))
    assert scale > 0, name
    np.testing.assert_allclose(g, e, rtol=0, atol=2e-6 * scale, err_msg=name)


def test_kernel_gradient_matches_float64_numpy():
  # An independent reference: lax.conv_transpose correlates the s-dilated input with the
  # (unflipped) kernel, so y[b, s*i - t + pa] += x[b, i] k[t] (1-D, stride 2, SAME), and
  # dk[t, c, f] = sum over b, i of x[b, i, c] dy[b, s*i - t + pa, f].
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 6, 3)).astype(np.float32).astype(np.float64)
  module = ConvTranspose(4, (4,), strides=(2,), padding="SAME")
  kernel = rng.standard_normal((4, 3, 4)).astype(np.float32).astype(np.float64)
  variables = {"params": {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.zeros(4)}}
  pa = 2  # lax.conv_transpose's padding of the dilated input for k=4, s=2, SAME.
  y = np.zeros((2, 12, 4))
  for i in range(6):
    for t in range(4):
      o = 2 * i - t + pa
      if 0 <= o < 12:
        y[:, o] += x[:, i] @ kernel[t]
  np.testing.assert_allclose(module.apply(variables, jnp.asarray(x, jnp.float32)), y, atol=1e-5)
  dy = rng.standard_normal(y.shape)
  dk = np.zeros_like(kernel)
  dx = np.zeros_like(x)
  for i in range(6):
    for t in range(4):
      o = 2 * i - t + pa
      if 0 <= o < 12:
        dk[t] += x[:, i].T @ dy[:, o]
        dx[:, i] += dy[:, o] @ kernel[t].T
  grads = _gradients(module, variables, jnp.asarray(x, jnp.float32), jnp.asarray(dy, jnp.float32))
  np.testing.assert_allclose(grads[0]["params"]["kernel"], dk, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(grads[1], dx, rtol=1e-5, atol=1e-5)


def test_second_order_gradients_equal_the_plain_op():
  # Reverse over reverse (e.g. a gradient penalty) differentiates the custom backward pass.
  x, plain, fast, plain_vars, fast_vars = _init_both(*CASES[0])

  def penalty(module):
    def input_grad_norm(variables):
      grad_x = jax.grad(lambda x: jnp.sum(jnp.sin(module.apply(variables, x))))(x)
      return jnp.sum(jnp.square(grad_x))

    return jax.jit(jax.grad(input_grad_norm))

  expected, got = penalty(plain)(plain_vars), penalty(fast)(fast_vars)
  for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    np.testing.assert_allclose(g, e, rtol=0, atol=1e-5 * float(np.max(np.abs(e))))


@pytest.mark.parametrize(
  "kwargs", [dict(kernel_dilation=(2, 2)), dict(transpose_kernel=True), dict(padding="CIRCULAR")]
)
def test_unsupported_settings_fall_back_to_the_plain_op(kwargs):
  settings = dict(
    shape=(2, 5, 5, 3), features=4, kernel_size=(3, 3), strides=(2, 2), padding="SAME"
  )
  settings.update(kwargs)
  x, plain, fast, plain_vars, fast_vars = _init_both(
    settings.pop("shape"),
    settings.pop("features"),
    settings.pop("kernel_size"),
    settings.pop("strides"),
    settings.pop("padding"),
    **settings,
  )
  assert not fast.uses_fast_backward()
  cotangent = jax.random.normal(jax.random.PRNGKey(2), plain.apply(plain_vars, x).shape)
  assert np.array_equal(plain.apply(plain_vars, x), fast.apply(fast_vars, x))
  for e, g in zip(
    jax.tree.leaves(_gradients(plain, plain_vars, x, cotangent)),
    jax.tree.leaves(_gradients(fast, fast_vars, x, cotangent)),
  ):
    assert np.array_equal(e, g)  # The very same computation.


def test_mask_is_applied_as_in_flax():
  mask = np.ones((4, 4, 5, 4), np.float32)
  mask[:2] = 0.0
  x, plain, fast, plain_vars, fast_vars = _init_both(*CASES[0], mask=mask)
  assert np.array_equal(plain.apply(plain_vars, x), fast.apply(fast_vars, x))
  cotangent = jax.random.normal(jax.random.PRNGKey(2), plain.apply(plain_vars, x).shape)
  expected = _gradients(plain, plain_vars, x, cotangent)[0]["params"]["kernel"]
  got = _gradients(fast, fast_vars, x, cotangent)[0]["params"]["kernel"]
  assert np.all(got[:2] == 0.0)
  np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * float(np.max(np.abs(expected))))


def test_gan_steps_equal_those_with_flax_conv_transpose(monkeypatch):
  # A conv GAN (BatchNorm in both networks) for three SGD steps: the decoder with the
  # custom VJP against the same decoder built with flax's ConvTranspose.
  config = helpers.tiny_config("gan", "conv")
  config.optimizer.name = "sgd"  # See tests/training/test_parallel.py about Adam.
  config.optimizer.learning_rate = 0.5
  batches = helpers.random_batches(3, 8)
  fast_state, fast_metrics = helpers.run_steps(config, batches, helpers.pmap_on(1))
  monkeypatch.setattr(bodies, "ConvTranspose", nn.ConvTranspose)
  plain_state, plain_metrics = helpers.run_steps(config, batches, helpers.pmap_on(1))
  initial = helpers.initial_state(config)
  moved = helpers.max_abs_difference(initial.generator.params, plain_state.generator.params)
  assert moved > 1e-2  # The generator did learn something in three steps.
  # Relative to each leaf's size: BatchNorm variances here reach 1e3.
  for plain_leaf, fast_leaf in zip(jax.tree.leaves(plain_state), jax.tree.leaves(fast_state)):
    scale = max(float(np.max(np.abs(plain_leaf))), 1.0)
    np.testing.assert_allclose(fast_leaf, plain_leaf, rtol=0, atol=1e-5 * scale)
  for plain_m, fast_m in zip(plain_metrics, fast_metrics):
    for name in plain_m:
      np.testing.assert_allclose(fast_m[name], plain_m[name], rtol=1e-5, atol=1e-6)
