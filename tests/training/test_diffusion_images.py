"""The image side of the diffusion family and classifier-free guidance: the UNet's blocks
against float64 numpy, its use of t and labels, its resolutions; label dropout keyed by the
global example index (8 devices == 1); the guided noise prediction and a guided sampler
against numpy; one conditional UNet train step's loss against an independent computation.
(`ddpm_digits` and `cddpm_digits` train two steps, with a small UNet, in
tests/experiments/test_configs.py; `experiments.train` itself in test_train_cli.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.errors import ConfigError
from aigc_jax.models.denoisers import TemporalMLP
from aigc_jax.models.unet import ResidualBlock, SelfAttention, UNet
from aigc_jax.training import diffusion
from aigc_jax.training.family import get_family
from experiments.configs import base
from tests.training import helpers
from tests.training import vae_reference as ref

TRAIN_KEY = jax.random.PRNGKey(1)  # The training key `helpers.run_steps` gives (seed 0 + 1).
NUM_CLASSES = 10


def _perturbed(params, seed, scale=0.3):
  """`params` plus N(0, scale^2) noise on every leaf (biases, norms, embeddings non-trivial)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(
    treedef, [leaf + scale * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
  )


def _image_config(conditioning="none", denoiser="unet", label_dropout=0.1, guidance=1.0):
  """A tiny diffusion config on the 8x8 digits (10 classes)."""
  config = base.get_base_config()
  config.dataset.name = "digits"
  config.model.family = "diffusion"
  config.model.conditioning = conditioning
  cfg = config.model.diffusion
  cfg.num_timesteps = 10
  cfg.beta_start, cfg.beta_end = 0.01, 0.3
  cfg.sampling_steps = 10
  cfg.ema_decay = 0.9
  cfg.denoiser = denoiser
  cfg.width = 8
  cfg.num_temporal_layers = 1
  cfg.channels = 4
  cfg.channel_multipliers = (1, 2)
  cfg.norm_groups = 2
  cfg.label_dropout = label_dropout
  cfg.guidance_scale = guidance
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.train.batch_size = 16
  return config


# --- float64 numpy twins of the UNet's blocks ----------------------------------------------


def _swish(x):
  return x / (1.0 + np.exp(-x))


def _group_norm(p, x, groups, epsilon=1e-6):
  """flax GroupNorm of `x [B, H, W, C]`: statistics per example over (H, W, C / groups)."""
  b, h, w, c = x.shape
  g = x.reshape(b, h, w, groups, c // groups)
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = ((g - mean) ** 2).mean(axis=(1, 2, 4), keepdims=True)
  return ((g - mean) / np.sqrt(var + epsilon)).reshape(x.shape) * p["scale"] + p["bias"]


def _conv3x3(p, x):
  """A 'SAME' 3x3 stride-1 convolution, as the sum over the 9 offsets of shifted products."""
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w = x.shape[1:3]
  out = sum(
    padded[:, dy : dy + h, dx : dx + w, :] @ p["kernel"][dy, dx]
    for dy in range(3)
    for dx in range(3)
  )
  return out + p["bias"]


def _dense(p, x):
  return x @ p["kernel"] + p["bias"]


def numpy_residual_block(p, x, embedding, groups):
  h = _conv3x3(p["conv1"], _swish(_group_norm(p["norm1"], x, groups)))
  h = h + _dense(p["embedding"], _swish(embedding))[:, None, None, :]
  h = _conv3x3(p["conv2"], _swish(_group_norm(p["norm2"], h, groups)))
  skip = x @ p["skip"]["kernel"][0, 0] + p["skip"]["bias"] if "skip" in p else x
  return skip + h


def numpy_self_attention(p, x, groups):
  b, h, w, c = x.shape
  q, k, v = (
    _dense(p[name], _group_norm(p["norm"], x, groups).reshape(b, h * w, c))
    for name in ("query", "key", "value")
  )
  logits = np.einsum("bqc,bkc->bqk", q, k) / math.sqrt(c)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return x + _dense(p["output"], np.einsum("bqk,bkc->bqc", weights, v)).reshape(x.shape)


@pytest.mark.parametrize("in_features, features", [(4, 4), (4, 6)], ids=["same", "widen"])
def test_residual_block_matches_numpy(in_features, features):
  rng = np.random.RandomState(0)
  x = rng.randn(3, 5, 6, in_features).astype(np.float32)  # Odd sizes: no resolution change.
  embedding = rng.randn(3, 8).astype(np.float32)
  block = ResidualBlock(features, groups=2)
  # Compiled: eager flax compiles each small op on its own (seconds each on 2 loaded cores).
  params = _perturbed(jax.jit(block.init)(jax.random.PRNGKey(0), x, embedding)["params"], 1)
  got = jax.jit(block.apply)({"params": params}, x, embedding)
  want = numpy_residual_block(ref.to_float64(params), x.astype(np.float64), embedding, 2)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_self_attention_matches_numpy():
  x = np.random.RandomState(1).randn(2, 3, 4, 6).astype(np.float32)
  attention = SelfAttention(groups=3)
  params = _perturbed(jax.jit(attention.init)(jax.random.PRNGKey(0), x)["params"], 2)
  got = jax.jit(attention.apply)({"params": params}, x)
  want = numpy_self_attention(ref.to_float64(params), x.astype(np.float64), 3)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# --- The UNet as a whole --------------------------------------------------------------------


def _unet_shapes(module, size):
  """The parameter shapes of `module` on `[1, size, size, 1]` images, traced, not compiled."""
  labels = jax.ShapeDtypeStruct((1,), jnp.int32) if module.num_classes else None
  return jax.eval_shape(
    module.init,
    jax.random.PRNGKey(0),
    jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32),
    jax.ShapeDtypeStruct((1,), jnp.int32),
    labels,
  )["params"]


def _unet(num_classes=0, size=8, multipliers=(1, 2), seed=0):
  """A UNet and random parameters: flax's initial values (zeros, ones) plus N(0, 0.3^2),
  built from the traced shapes (compiling `init` costs as much as compiling `apply`)."""
  module = UNet(channels=4, channel_multipliers=multipliers, groups=2, num_classes=num_classes)
  shapes = _unet_shapes(module, size)
  initial = jax.tree_util.tree_map_with_path(
    lambda path, leaf: jnp.full(leaf.shape, float(path[-1].key == "scale"), leaf.dtype), shapes
  )
  return module, _perturbed(initial, seed + 1)


def test_the_unet_uses_t_and_one_timestep_broadcasts_to_the_batch():
  module, params = _unet()
  x = np.random.RandomState(2).randn(5, 8, 8, 1).astype(np.float32)
  run = jax.jit(module.apply)
  apply = lambda t: np.asarray(run({"params": params}, x, jnp.asarray(t, jnp.int32)))
  early, late = apply([3]), apply([700])
  assert np.max(np.abs(early - late)) > 1e-2  # The timestep changes the prediction.
  np.testing.assert_allclose(early, apply(np.full(5, 3)), rtol=1e-5, atol=1e-5)
  # Per example: example 0's prediction does not depend on the rest of the batch (the same
  # shapes with examples 1..4 replaced: no third compile).
  others = x.copy()
  others[1:] = np.random.RandomState(12).randn(4, 8, 8, 1)
  changed = np.asarray(run({"params": params}, others, jnp.array([3])))
  assert np.max(np.abs(changed[1:] - early[1:])) > 1e-2
  np.testing.assert_allclose(early[:1], changed[:1], atol=1e-5)


def test_the_conditional_unet_and_mlp_use_their_labels():
  x = np.random.RandomState(3).randn(4, 8, 8, 1).astype(np.float32)
  t = jnp.array([5], jnp.int32)
  module, params = _unet(num_classes=NUM_CLASSES)
  mlp = TemporalMLP(width=8, num_layers=1, num_classes=NUM_CLASSES)
  mlp_params = _perturbed(
    jax.jit(mlp.init)(jax.random.PRNGKey(0), x[:1], t, jnp.zeros((1,), jnp.int32))["params"], 1
  )
  for net, p in ((module, params), (mlp, mlp_params)):
    run = jax.jit(net.apply)
    out = lambda y, run=run, p=p: np.asarray(run({"params": p}, x, t, jnp.asarray(y, jnp.int32)))
    assert np.max(np.abs(out([1, 1, 1, 1]) - out([2, 2, 2, 2]))) > 1e-2
    assert np.max(np.abs(out([1, 1, 1, 1]) - out([NUM_CLASSES] * 4))) > 1e-2  # "No label".
    # Label embedding rows are per example: changing example 3's label leaves 0..2 alone.
    np.testing.assert_allclose(out([1, 2, 3, 4])[:3], out([1, 2, 3, 0])[:3], atol=1e-6)


@pytest.mark.parametrize(
  "size, multipliers",
  [(28, (1, 2, 2)), (32, (1, 2, 2, 2)), (14, (1, 2)), (28, (1, 2, 2, 2)), (7, (1, 2))],
  ids=str,
)
def test_the_unet_takes_exactly_the_sizes_that_halve_once_per_level(size, multipliers):
  """Accepted iff H = W is divisible by 2^(levels - 1), and then the way up lands back on the
  input size (28 = 4 x 7 takes 3 levels, not 4; 32 takes 4; odd 7 takes only 1)."""
  halves = size % 2 ** (len(multipliers) - 1) == 0
  config = _image_config()
  config.model.diffusion.channel_multipliers = multipliers
  if halves:
    # A question of shapes: traced by eval_shape, which raises what a compiled call would.
    module = UNet(channels=4, channel_multipliers=multipliers, groups=2)
    x = jax.ShapeDtypeStruct((2, size, size, 1), jnp.float32)
    params = _unet_shapes(module, size)
    out = jax.eval_shape(module.apply, {"params": params}, x, jax.ShapeDtypeStruct((1,), jnp.int32))
    assert (out.shape, out.dtype) == (x.shape, x.dtype)
    get_family(config, (size, size, 1))  # The family builds too.
    return
  with pytest.raises(ConfigError, match="divisible by") as error:
    get_family(config, (size, size, 1))
  assert "\n" not in str(error.value)
  module = UNet(channels=4, channel_multipliers=multipliers, groups=2)
  with pytest.raises(ValueError, match="divisible by"):
    module.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 1)), jnp.zeros((1,), jnp.int32))


@pytest.mark.parametrize(
  "key, value, message",
  [
    ("norm_groups", 3, "norm_groups"),
    ("denoiser", "transformer", "transformer"),
  ],
)
def test_unet_settings_that_cannot_work_are_refused(key, value, message):
  config = _image_config()
  config.model.diffusion[key] = value
  with pytest.raises(ConfigError, match=message):
    get_family(config, (8, 8, 1))


def test_the_unet_refuses_points_and_guidance_refuses_other_conditionings():
  with pytest.raises(ConfigError, match="denoiser='mlp'"):
    get_family(_image_config(), (2,))
  with pytest.raises(ConfigError, match="'embedding'"):
    get_family(_image_config(conditioning="concat"), (8, 8, 1))


# --- Label dropout --------------------------------------------------------------------------


def test_label_dropout_depends_only_on_the_key_and_the_global_index():
  key = jax.random.PRNGKey(5)
  labels = jnp.asarray(np.random.RandomState(0).randint(0, 10, 20_000), jnp.int32)
  indices = jnp.arange(20_000, dtype=jnp.int32)
  dropped = np.asarray(diffusion.dropped_labels(key, indices, labels, 10, 0.3))
  is_dropped = dropped == 10
  np.testing.assert_array_equal(dropped[~is_dropped], np.asarray(labels)[~is_dropped])
  # The fraction is p within 4 standard errors.
  assert abs(is_dropped.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 20_000), is_dropped.mean()
  # A device holding examples 1000..1099 alone decides as the whole batch does for them.
  part = np.asarray(diffusion.dropped_labels(key, indices[1000:1100], labels[1000:1100], 10, 0.3))
  np.testing.assert_array_equal(part, dropped[1000:1100])
  # The decisions do not reuse the (t, eps) draws: another key-derived stream.
  t, _ = diffusion.timesteps_and_noise(key, indices[:2000], 2, ())
  assert abs(np.corrcoef(np.asarray(t), is_dropped[:2000])[0, 1]) < 0.1
  assert not np.any(np.asarray(diffusion.dropped_labels(key, indices, labels, 10, 0.0)) == 10)


def test_a_conditional_run_on_8_devices_matches_one_device():
  """Label dropout happens in the family's loss, whatever the denoiser: the MLP's run, with
  plain SGD (Adam would amplify float noise in gradients that are exactly 0)."""
  config = _image_config("embedding", "mlp", label_dropout=0.5)
  batches = helpers.random_batches(2, 16, shape=(8, 8, 1))
  state_1, metrics_1 = helpers.run_steps(config, batches, helpers.pmap_on(1))
  state_8, metrics_8 = helpers.run_steps(config, batches, helpers.pmap_on(8))
  for m1, m8 in zip(metrics_1, metrics_8):
    np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
  assert helpers.max_abs_difference(state_1.params, state_8.params) < 2e-5
  # The "no label" row of the embedding trained: some examples dropped their label.
  initial = helpers.initial_state(config, (8, 8, 1))
  null_row = lambda s: s.params["label_embedding"]["embedding"][NUM_CLASSES]
  assert np.max(np.abs(null_row(state_1) - null_row(initial))) > 1e-3


# --- One conditional UNet train step against an independent loss --------------------------


def _step_draws(num_timesteps, shape, batch_size, labels, probability):
  """(t [B], eps [B, *shape], labels after dropout [B]) of step 0, as the module docstring of
  `training.diffusion` keys them."""
  step_key = jax.random.fold_in(TRAIN_KEY, 0)
  ts, eps, kept = [], [], []
  for i in range(batch_size):
    example_key = jax.random.fold_in(step_key, i)
    t_key, eps_key = jax.random.split(example_key)
    ts.append(int(jax.random.randint(t_key, (), 0, num_timesteps, jnp.int32)))
    eps.append(np.asarray(jax.random.normal(eps_key, shape), np.float64))
    u = float(jax.random.uniform(jax.random.fold_in(example_key, 1), ()))
    kept.append(NUM_CLASSES if u < probability else int(labels[i]))
  return np.array(ts), np.stack(eps), np.array(kept, np.int32)


def test_one_conditional_unet_step_loss_equals_the_loss_of_its_draws():
  config = _image_config("embedding", "unet", label_dropout=0.5)
  # The loss and its draws do not depend on the UNet's depth: the smallest one (one level,
  # no attention) still takes t and the labels; the UNet itself is tested above.
  config.model.diffusion.channel_multipliers = (1,)
  config.model.diffusion.attention = False
  batch = helpers.random_batches(1, 16, shape=(8, 8, 1))[0]
  family = get_family(config, (8, 8, 1))
  initial = jax.jit(family.init)(jax.random.PRNGKey(0))
  initial = initial.replace(params=_perturbed(initial.params, 3, scale=0.1))
  parallel = helpers.pmap_on(4)
  _, metrics = parallel.compile_train_step(family.train_step)(
    parallel.put_state(initial), parallel.put_batch(helpers.device_layout(batch, 4)), TRAIN_KEY
  )
  loss = float(jax.device_get(parallel.first_copy(metrics))["loss"])

  alpha_bars = diffusion.make_schedule(config.model.diffusion).alpha_bars
  t, eps, labels = _step_draws(10, (8, 8, 1), 16, batch["label"], 0.5)
  assert 0 < np.sum(labels == NUM_CLASSES) < 16  # Some labels dropped, some kept.
  x0 = 2.0 * batch["image"].astype(np.float64) - 1.0  # Images diffuse in [-1, 1].
  a = alpha_bars[t][:, None, None, None]
  x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * eps
  apply = jax.jit(initial.apply_fn)
  predicted = np.asarray(
    apply({"params": initial.params}, x_t.astype(np.float32), t, labels), np.float64
  )
  np.testing.assert_allclose(loss, np.mean((predicted - eps) ** 2), rtol=1e-5)
  undropped = np.asarray(
    apply({"params": initial.params}, x_t.astype(np.float32), t, batch["label"])
  )
  assert abs(loss - np.mean((undropped - eps) ** 2)) > 1e-4  # The dropout mattered.


# --- Classifier-free guidance ---------------------------------------------------------------


def _leaky(x):
  return np.where(x >= 0, x, 0.02 * x)


def _layer_norm(p, x):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def numpy_conditional_mlp(p, x, t, labels):
  """eps `[B, *shape]` of a conditional TemporalMLP (one shared temporal layer), float64."""
  shape = x.shape
  x = x.reshape(shape[0], -1)
  width = p["input"]["kernel"].shape[1]
  half = width // 2
  frequencies = np.exp(-math.log(10000.0) * np.arange(half) / (half - 1))
  angles = np.asarray(t, np.float64)[:, None] * frequencies[None]
  embedding = np.concatenate([np.sin(angles), np.cos(angles)], -1)
  embedding = _leaky(_dense(p["time_projection"], embedding))
  embedding = embedding + p["label_embedding"]["embedding"][labels]
  h = x @ p["input"]["kernel"]
  layer = p["temporal"]
  inner = _leaky(_layer_norm(layer["norm1"], h)) @ layer["fc1"]["kernel"]
  inner = inner + _dense(layer["time"], embedding)
  h = _leaky(_layer_norm(layer["norm2"], inner)) @ layer["fc2"]["kernel"] + h
  return _dense(p["output"], _layer_norm(p["output_norm"], h)).reshape(shape)


def _conditional_mlp(seed=0):
  module = TemporalMLP(width=8, num_layers=1, num_classes=NUM_CLASSES)
  params = module.init(
    jax.random.PRNGKey(seed),
    jnp.zeros((1, 8, 8, 1)),
    jnp.zeros((1,), jnp.int32),
    jnp.zeros((1,), jnp.int32),
  )["params"]
  return module, _perturbed(params, seed + 1)


@pytest.mark.parametrize("guidance_scale", [0.0, 1.5])
@pytest.mark.parametrize("t", [[6], [1, 6, 9]], ids=["one t", "t per example"])
def test_guided_noise_is_the_numpy_combination(guidance_scale, t):
  module, params = _conditional_mlp()
  x = np.random.RandomState(6).randn(3, 8, 8, 1).astype(np.float32)
  labels = np.array([0, 4, 9], np.int32)
  eps_fn = diffusion.guided_eps(
    lambda x, t, y: module.apply({"params": params}, x, t, y),
    jnp.asarray(labels),
    NUM_CLASSES,
    guidance_scale,
  )
  got = eps_fn(x, jnp.asarray(t, jnp.int32))
  p64, t3 = ref.to_float64(params), np.broadcast_to(t, (3,))
  conditional = numpy_conditional_mlp(p64, x.astype(np.float64), t3, labels)
  unconditional = numpy_conditional_mlp(p64, x.astype(np.float64), t3, np.full(3, NUM_CLASSES))
  want = (1 + guidance_scale) * conditional - guidance_scale * unconditional
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  if guidance_scale:
    assert np.max(np.abs(want - conditional)) > 1e-2  # The guidance term is not negligible.


def test_generate_runs_the_guided_numpy_chain_for_the_requested_labels():
  """DDIM over 3 of 10 timesteps (9, 4 or 5, 0) with guidance 1.5, unclipped: the samples
  equal numpy's chain of guided predictions for the labels asked for."""
  config = _image_config("embedding", "mlp", guidance=1.5)
  config.model.output_range = "unbounded"  # No [0, 1] mapping or clipping to undo.
  config.model.diffusion.sampler = "ddim"
  config.model.diffusion.sampling_steps = 3
  family = get_family(config, (8, 8, 1))
  assert family.conditional
  _, params = _conditional_mlp()
  state = family.init(jax.random.PRNGKey(0)).replace(ema_params=params)
  labels = np.array([3, 3, 7, 1], np.int32)
  key = jax.random.PRNGKey(8)
  got = np.asarray(family.generate(state, key, 4, jnp.asarray(labels)))

  schedule = diffusion.make_schedule(config.model.diffusion)
  timesteps = diffusion.sampling_timesteps(10, 3)[::-1]
  p64 = ref.to_float64(params)
  x = np.asarray(jax.random.normal(jax.random.split(key)[0], (4, 8, 8, 1)), np.float64)
  for j, t in enumerate(timesteps):
    a = schedule.alpha_bars[t]
    a_prev = schedule.alpha_bars[timesteps[j + 1]] if j + 1 < len(timesteps) else 1.0
    ts = np.full(4, t)
    eps = 2.5 * numpy_conditional_mlp(p64, x, ts, labels) - 1.5 * numpy_conditional_mlp(
      p64, x, ts, np.full(4, NUM_CLASSES)
    )
    x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
    x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
  np.testing.assert_allclose(got, x, rtol=1e-3, atol=1e-3)
  other = np.asarray(family.generate(state, key, 4, jnp.asarray([0, 0, 0, 0], jnp.int32)))
  assert np.max(np.abs(other - got)) > 1e-2  # The labels asked for change the samples.
  # The sampler's unconditional call signature still works, with default labels.
  samples, kept = diffusion.make_sampler(config.model, (8, 8, 1), NUM_CLASSES)(state, key, 4, 1)
  assert kept.shape == (1, 4, 8, 8, 1)
  np.testing.assert_allclose(
    samples, family.generate(state, key, 4, jnp.arange(4) % NUM_CLASSES), rtol=1e-4, atol=1e-4
  )
