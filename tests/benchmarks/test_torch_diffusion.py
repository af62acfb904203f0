"""The PyTorch twins of the diffusion denoisers compute what ours compute: our flax parameters
copied in give the same outputs, losses, gradients and DDIM samples (so the harness times the
same network on both sides). Skipped without PyTorch (the `bench` extra)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aigc_jax.models.denoisers import TemporalMLP  # noqa: E402  (after the skip)
from aigc_jax.models.unet import UNet  # noqa: E402
from aigc_jax.training import diffusion  # noqa: E402
from benchmarks import torch_diffusion  # noqa: E402

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def _one_torch_thread():
  """One thread: on a CPU shared with other work torch's OpenMP threads slow to a crawl."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _random_params(module, *inputs):
  """Parameters of `module`'s shapes drawn by numpy: kernels N(0, 1/fan_in), biases and norm
  offsets N(0, 0.1^2), norm scales 1 + N(0, 0.1^2). Non-zero biases, unlike flax's initial
  ones, so a bias copied to the wrong place shows; and no XLA compile of the initialisers
  (about 25 s for the UNet's on this CPU)."""
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = path[-1].key
    values = rng.standard_normal(leaf.shape).astype(np.float32)
    if name == "kernel":
      return values / np.sqrt(np.prod(leaf.shape[:-1]))
    return 1.0 + 0.1 * values if name == "scale" else 0.1 * values

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _mlp_pair(num_timesteps=10, features=2):
  ours = TemporalMLP(width=128, num_layers=3, shared=True, num_timesteps=num_timesteps)
  params = _random_params(ours, jnp.zeros((1, features)), jnp.zeros((1,), jnp.int32))
  twin = torch_diffusion.TemporalMLP(features, 128, 3, num_timesteps)
  torch_diffusion.load_flax_params(twin, params["params"])
  return ours, params, twin


def _unet_pair(image_shape=(8, 8, 2)):
  kwargs = dict(channels=8, channel_multipliers=(1, 2), res_blocks=1, attention=True, groups=4)
  ours = UNet(**kwargs)
  params = _random_params(ours, jnp.zeros((1,) + image_shape), jnp.zeros((1,), jnp.int32))
  twin = torch_diffusion.UNet(image_channels=image_shape[-1], **kwargs)
  torch_diffusion.load_flax_params(twin, params["params"])
  return ours, params, twin


def _to_torch(x):
  return torch.from_numpy(np.asarray(x))


def test_mlp_twin_has_one_shared_temporal_layer():
  _, params, twin = _mlp_pair()
  assert set(params["params"]["temporal"]) == {"fc1", "fc2", "norm1", "norm2", "time"}
  ours_count = sum(np.size(p) for p in jax.tree.leaves(params))
  assert sum(p.numel() for p in twin.parameters()) == ours_count


@pytest.mark.parametrize("t_shape", ["per_example", "table", "one"])
def test_mlp_twin_forward_matches(t_shape):
  ours, params, twin = _mlp_pair(num_timesteps=10)
  rng = np.random.default_rng(0)
  batch = {"per_example": 6, "table": 16, "one": 16}[t_shape]  # table: batch > T = 10.
  x = rng.standard_normal((batch, 2)).astype(np.float32)
  t = rng.integers(0, 10, 1 if t_shape == "one" else batch).astype(np.int32)
  expected = np.asarray(jax.jit(ours.apply)(params, x, t))
  got = twin(_to_torch(x), _to_torch(t).long()).detach().numpy()
  np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
  assert np.abs(expected).max() > 0.05  # Not a trivially small output.


def test_unet_twin_forward_matches():
  ours, params, twin = _unet_pair()
  rng = np.random.default_rng(1)
  x = rng.standard_normal((3, 8, 8, 2)).astype(np.float32)
  t = np.array([0, 400, 999], np.int32)
  expected = np.asarray(jax.jit(ours.apply)(params, x, t))
  got = twin(_to_torch(x.transpose(0, 3, 1, 2)), _to_torch(t).long()).detach().numpy()
  np.testing.assert_allclose(got.transpose(0, 2, 3, 1), expected, atol=TOLERANCE, rtol=0)
  assert np.abs(expected).max() > 0.05


def test_loss_and_gradients_match():
  """The twin's training loss and its gradient equal `diffusion.denoising_loss` and jax.grad
  of it, for the same x0, t and eps (what both steps then hand to Adam)."""
  ours, params, twin = _mlp_pair(num_timesteps=10)
  alpha_bars = diffusion.make_schedule(
    _diffusion_cfg(num_timesteps=10, beta_start=0.001, beta_end=0.2)
  ).alpha_bars
  rng = np.random.default_rng(2)
  x0 = rng.standard_normal((16, 2)).astype(np.float32)
  eps = rng.standard_normal((16, 2)).astype(np.float32)
  t = rng.integers(0, 10, 16).astype(np.int32)

  def loss_fn(p):
    eps_fn = lambda x, t_: ours.apply({"params": p}, x, t_)
    bars = jnp.asarray(alpha_bars, jnp.float32)
    return jnp.mean(diffusion.denoising_loss(eps_fn, x0, t, eps, bars))

  loss, grads = jax.value_and_grad(loss_fn)(params["params"])
  twin_loss = torch_diffusion.denoising_loss(
    twin,
    _to_torch(x0),
    _to_torch(t).long(),
    _to_torch(eps),
    torch.tensor(alpha_bars, dtype=torch.float32),
  )
  twin_loss.backward()
  assert float(twin_loss.detach()) == pytest.approx(float(loss), abs=1e-5)
  ours_kernel = np.asarray(grads["temporal"]["fc1"]["kernel"])  # The shared layer's: 3 uses.
  np.testing.assert_allclose(twin.temporal.fc1.weight.grad.numpy().T, ours_kernel, atol=1e-5)
  np.testing.assert_allclose(
    twin.output.bias.grad.numpy(), np.asarray(grads["output"]["bias"]), atol=1e-5
  )
  assert np.abs(ours_kernel).max() > 1e-3


def _diffusion_cfg(**overrides):
  from experiments.configs import base

  cfg = base.get_base_config().model.diffusion
  cfg.update(overrides)
  return cfg


def test_ddim_samples_match():
  """DDIM is deterministic given its start: the twin's sampler reproduces ours on the same
  network (5 of 1,000 timesteps, the UNet; clipped predictions, as the shapes base)."""
  ours, params, twin = _unet_pair()
  cfg = _diffusion_cfg(num_timesteps=1000, schedule="cosine")
  schedule = diffusion.make_schedule(cfg)
  x_start = np.random.default_rng(3).standard_normal((2, 8, 8, 2)).astype(np.float32)
  kwargs = dict(num_steps=5, sampler="ddim", variance="large", clip=True)
  expected, _ = diffusion.sample(
    lambda x, t: ours.apply(params, x, t), schedule, x_start, jax.random.PRNGKey(0), **kwargs
  )
  got = torch_diffusion.sample(
    twin, schedule.alpha_bars, _to_torch(x_start.transpose(0, 3, 1, 2)), **kwargs
  ).numpy()
  np.testing.assert_allclose(got.transpose(0, 2, 3, 1), np.asarray(expected), atol=TOLERANCE)
  assert np.abs(np.asarray(expected) - x_start).max() > 0.1  # The sampler moved the samples.


def test_twin_train_step_lowers_the_loss_on_a_fixed_batch():
  """The twin's step is a working optimiser step: Adam on one fixed batch lowers its loss."""
  from experiments.configs import aithal_toy

  config = aithal_toy.get_config("grid25")
  step = torch_diffusion.make_train_step(config, (2,), batch_size=256)
  losses = [float(step()) for _ in range(40)]
  assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
