"""The GAN family's variants end to end: EMA, spectral-norm state, class conditioning,
PacGAN packing, and the one-line errors of configs that cannot work."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import inference, training
from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.models import bodies
from aigc_jax.models.gan import Generator
from aigc_jax.training import gan, noise
from aigc_jax.training.family import get_family
from experiments.configs import base
from tests.training import helpers
from tests.training.test_gan import (
  GLOBAL_BATCH,
  IMAGE_SHAPE,
  assert_parameters,
  contract_latents,
  layers_of,
  reference_variant_step,
  tiny_gan_config,
)


def _steps_with_history(config, batches, parallel, shape=IMAGE_SHAPE):
  """Runs the train step; returns (family, device state, one-copy states after each step)."""
  family = get_family(config, shape)
  state = parallel.put_state(family.init(jax.random.PRNGKey(0)))
  step = parallel.compile_train_step(family.train_step)
  history = [family.init(jax.random.PRNGKey(0))]
  for batch in batches:
    state, _ = step(
      state,
      parallel.put_batch(helpers.device_layout(batch, parallel.num_local_devices)),
      jax.random.PRNGKey(1),
    )
    history.append(jax.device_get(parallel.get_state(state)))
  return family, state, history


def _mlp_samples(params, z, num_layers):
  """A tanh MLP generator's samples in [0, 1], float64 numpy."""
  layers = [
    (
      np.asarray(params["decoder"][f"Dense_{i}"]["kernel"], np.float64),
      np.asarray(params["decoder"][f"Dense_{i}"]["bias"], np.float64),
    )
    for i in range(num_layers)
  ]
  x = np.asarray(z, np.float64)
  for i, (kernel, bias) in enumerate(layers):
    x = x @ kernel + bias
    x = np.maximum(x, 0.0) if i < num_layers - 1 else x
  return (np.tanh(x) + 1.0) / 2.0


# ----------------------------------------------------------------------------------------- EMA


def test_ema_is_the_closed_form_after_k_steps_and_is_what_sampling_and_evaluation_use():
  decay, k = 0.8, 3
  config = tiny_gan_config()
  config.model.gan.ema_decay = decay
  batches = helpers.random_batches(k, GLOBAL_BATCH, shape=IMAGE_SHAPE, seed=6)
  family, _, history = _steps_with_history(config, batches, helpers.pmap_on(2))
  final = history[-1]
  # ema_k = d^k theta_0 + (1 - d) sum_j d^(k - j) theta_j.
  params = [jax.tree.map(lambda x: np.asarray(x, np.float64), s.generator.params) for s in history]
  closed = jax.tree.map(
    lambda *thetas: (
      decay**k * thetas[0]
      + (1 - decay) * sum(decay ** (k - j) * thetas[j] for j in range(1, k + 1))
    ),
    *params,
  )
  jax.tree.map(
    lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7),
    final.generator_ema,
    closed,
  )
  assert helpers.max_abs_difference(final.generator_ema, final.generator.params) > 1e-3

  z = jax.random.normal(jax.random.PRNGKey(9), (5, 3))  # generate's z for this key.
  samples = np.asarray(family.generate(final, jax.random.PRNGKey(9), 5)).reshape(5, -1)
  np.testing.assert_allclose(samples, _mlp_samples(final.generator_ema, z, 2), atol=1e-5)
  assert np.abs(samples - _mlp_samples(final.generator.params, z, 2)).max() > 1e-4

  # Evaluation: the EMA's samples too (swapping the live weights for it changes nothing).
  batch = helpers.device_layout(helpers.random_batches(1, 4, shape=IMAGE_SHAPE)[0], 1)
  evaluate = jax.pmap(family.eval_step, axis_name=noise.BATCH_AXIS, in_axes=(None, 0, None))
  key = jax.random.PRNGKey(2)
  sums = evaluate(final, batch, key)
  live_is_ema = final.replace(generator=final.generator.replace(params=final.generator_ema))
  np.testing.assert_allclose(sums["g_loss"], evaluate(live_is_ema, batch, key)["g_loss"])
  no_ema = final.replace(generator_ema={})
  assert abs(float(sums["g_loss"][0] - evaluate(no_ema, batch, key)["g_loss"][0])) > 1e-6


# ------------------------------------------------------------------------- spectral norm state


def _spectral_norm_config():
  config = helpers.tiny_config("gan", "mlp")
  config.model.gan.spectral_norm = True
  config.model.encoder.norm = "none"
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.05
  return config


def test_spectral_norm_state_advances_in_training_and_is_identical_on_every_device():
  config = _spectral_norm_config()
  config.model.encoder.widths = (16, 8)
  batches = helpers.random_batches(2, 16, shape=IMAGE_SHAPE)
  _, device_state, history = _steps_with_history(config, batches, helpers.pmap_on(8))
  stats = [h.discriminator.batch_stats for h in history]
  assert {name for group in stats[0]["encoder"].values() for name in group} == {
    "Dense_0/kernel/u",
    "Dense_0/kernel/sigma",
    "Dense_1/kernel/u",
    "Dense_1/kernel/sigma",
    "Dense_2/kernel/u",
    "Dense_2/kernel/sigma",
  }
  # Each train step moves the power-iteration vectors (the step applies D 3 times).
  assert helpers.max_abs_difference(stats[0], stats[1]) > 1e-4
  assert helpers.max_abs_difference(stats[1], stats[2]) > 1e-6
  # Every device holds the same copy: u depends on the (replicated) weights only.
  for leaf in jax.tree.leaves(device_state.discriminator.batch_stats):
    copies = np.asarray(leaf)
    for copy in copies[1:]:
      np.testing.assert_array_equal(copy, copies[0])


def test_ema_and_spectral_norm_state_are_saved_and_load_for_inference_restores_them(tmp_path):
  config = _spectral_norm_config()
  config.model.gan.ema_decay = 0.5
  config.train.num_steps = 2
  config.train.eval_every = 2
  config.train.sample_every = 0
  config.train.num_samples = 4
  (tmp_path / "tfds").mkdir()  # config.dataset.data_dir must exist.
  config.dataset.data_dir = str(tmp_path / "tfds")
  results = training.train_and_evaluate(config, str(tmp_path / "run"))
  _, family, loaded, step = inference.load_for_inference(str(tmp_path / "run"))
  trained = results["state"]
  assert step == 2
  assert helpers.max_abs_difference(loaded.generator_ema, trained.generator_ema) == 0.0
  assert (
    helpers.max_abs_difference(loaded.discriminator.batch_stats, trained.discriminator.batch_stats)
    == 0.0
  )
  assert helpers.max_abs_difference(loaded.generator_ema, loaded.generator.params) > 1e-4
  np.testing.assert_array_equal(
    family.generate(loaded, jax.random.PRNGKey(0), 4),
    family.generate(trained, jax.random.PRNGKey(0), 4),
  )


# ------------------------------------------------------------------------------ conditioning


def _one_hot_channels(labels, shape):
  """x `[n, pixels]` -> the same images with the one-hot labels as extra channels, flat."""
  code = np.eye(10)[labels]

  def join(flat):
    images = flat.reshape((len(flat),) + shape)
    tiled = np.broadcast_to(code[:, None, None, :], images.shape[:-1] + (10,))
    return np.concatenate([images, tiled], axis=-1).reshape(len(flat), -1)

  return join


def test_concat_conditional_step_matches_float64_reference():
  config = tiny_gan_config()
  config.model.conditioning = "concat"
  batches = helpers.random_batches(1, GLOBAL_BATCH, shape=IMAGE_SHAPE, seed=7)
  labels = batches[0]["label"]
  assert len(set(labels)) > 3
  initial = helpers.initial_state(config, IMAGE_SHAPE)
  state, metrics = helpers.run_steps(config, batches, helpers.pmap_on(2))
  z = contract_latents(jax.random.PRNGKey(1), 0, GLOBAL_BATCH)
  join = _one_hot_channels(labels, IMAGE_SHAPE)
  d_loss, _, g_loss, new_gen, new_disc = reference_variant_step(
    layers_of(initial.generator.params, "decoder"),
    layers_of(initial.discriminator.params, "encoder"),
    np.asarray(batches[0]["image"], np.float64),
    np.concatenate([z, np.eye(10)[labels]], axis=1),  # G(z, y) = G([z, one_hot(y)]).
    "non_saturating",
    "none",
    0.0,
    None,
    augment_real=join,
    augment_fake=join,
    augment_generator=join,
  )
  np.testing.assert_allclose(metrics[0]["d_loss"], d_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics[0]["g_loss"], g_loss, rtol=1e-5)
  assert_parameters(state, new_gen, new_disc)


@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_conditional_generate_makes_the_asked_classes_and_cycles_them_by_default(conditioning):
  config = helpers.tiny_config("gan", "conv")
  config.model.conditioning = conditioning
  family = get_family(config, (28, 28, 1))
  assert family.conditional
  state = family.init(jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(4)
  default = np.asarray(family.generate(state, key, 12))
  np.testing.assert_array_equal(
    default, family.generate(state, key, 12, labels=jnp.arange(12) % 10)
  )
  zeros = np.asarray(family.generate(state, key, 12, labels=jnp.zeros(12, jnp.int32)))
  changed = np.abs(default - zeros).reshape(12, -1).max(axis=1)
  assert changed[0] == 0.0 and np.all(changed[1:10] > 1e-4)  # Class 0 alone is unchanged.


def test_unconditional_family_ignores_labels():
  config = helpers.tiny_config("gan", "mlp")
  family = get_family(config, IMAGE_SHAPE)
  assert not family.conditional
  state = family.init(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(
    family.generate(state, jax.random.PRNGKey(1), 4),
    family.generate(state, jax.random.PRNGKey(1), 4, labels=jnp.arange(4)),
  )


# ------------------------------------------------------------------------------------ PacGAN


def _pacgan_points_config(pack_size):
  config = tiny_gan_config()
  config.model.gan.pack_size = pack_size
  config.model.gan.generator_output = "linear"
  return config


def test_pacgan_step_matches_float64_reference_on_points():
  """The discriminator judges pairs of consecutive samples, concatenated: [x_2p, x_2p+1]."""
  config = _pacgan_points_config(2)
  batches = helpers.random_point_batches(1, GLOBAL_BATCH, seed=8)
  initial = helpers.initial_state(config, (2,))
  assert initial.discriminator.params["encoder"]["Dense_0"]["kernel"].shape == (4, 6)
  state, metrics = helpers.run_steps(config, batches, helpers.pmap_on(2))
  pack = lambda x: np.stack([np.concatenate([x[2 * p], x[2 * p + 1]]) for p in range(len(x) // 2)])
  d_loss, _, g_loss, new_gen, new_disc = reference_variant_step(
    layers_of(initial.generator.params, "decoder"),
    layers_of(initial.discriminator.params, "encoder"),
    np.asarray(batches[0]["image"], np.float64),
    contract_latents(jax.random.PRNGKey(1), 0, GLOBAL_BATCH),
    "non_saturating",
    "none",
    0.0,
    None,
    augment_real=pack,
    augment_fake=pack,
    augment_generator=pack,
    output="linear",
  )
  np.testing.assert_allclose(metrics[0]["d_loss"], d_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics[0]["g_loss"], g_loss, rtol=1e-5)
  assert_parameters(state, new_gen, new_disc)


def test_pack_slots_get_their_own_batchnorm_statistics():
  """As the PacGAN code calls its generator once per slot: slot j = examples j, j + m, ..."""
  generator = Generator(
    bodies.MLPDecoder(
      (2,), widths=(5,), norm="batch", bias_before_norm=False, batch_axis_name=noise.BATCH_AXIS
    ),
    output="linear",
  )
  z = np.random.RandomState(9).randn(6, 3).astype(np.float32)
  variables = generator.init(jax.random.PRNGKey(0), z)
  state = helpers.initial_state(_pacgan_points_config(1), (2,)).generator.replace(
    apply_fn=generator.apply, params=variables["params"], batch_stats=variables["batch_stats"]
  )
  samples, stats = jax.vmap(
    lambda zz: gan._generate_for_training(state, state.params, zz, None, 3),
    axis_name=noise.BATCH_AXIS,
  )(z[None])
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), variables["params"]["decoder"])
  bn = p["_Norm_0"]["BatchNorm_0"]
  want, means = np.zeros((6, 2)), []
  for j in range(3):
    h = z[j::3].astype(np.float64) @ p["Dense_0"]["kernel"]
    mean, var = h.mean(axis=0), h.var(axis=0)
    means.append(mean)
    h = np.maximum((h - mean) / np.sqrt(var + 1e-5) * bn["scale"] + bn["bias"], 0.0)
    want[j::3] = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
  np.testing.assert_allclose(samples[0], want, rtol=1e-4, atol=1e-5)
  # The running mean moves by the slots' average: 0.9 * 0 + 0.1 * mean_j(mean of slot j).
  np.testing.assert_allclose(
    stats["decoder"]["_Norm_0"]["BatchNorm_0"]["mean"][0],
    0.1 * np.mean(means, axis=0),
    rtol=1e-4,
    atol=1e-7,
  )


# ---------------------------------------------------------------------- configs that cannot work


def _error(mutate, shape=IMAGE_SHAPE):
  config = tiny_gan_config()
  mutate(config)
  with pytest.raises(ConfigError) as info:
    get_family(config, shape).init(jax.random.PRNGKey(0))
  message = str(info.value)
  assert "\n" not in message
  return message


def _set(**values):
  def mutate(config):
    for path, value in values.items():
      node = config
      *parents, leaf = path.split("__")
      for parent in parents:
        node = node[parent]
      node[leaf] = value

  return mutate


@pytest.mark.parametrize(
  "values,expected",
  [
    (
      dict(model__gan__loss="minimax"),
      "Unknown GAN loss 'minimax'; valid choices are: hinge, non_saturating, wasserstein.",
    ),
    (
      dict(model__gan__regularizer="r2"),
      "Unknown GAN regularizer 'r2'; valid choices are: gradient_penalty, none, r1.",
    ),
    (
      dict(model__gan__generator_output="sigmoid"),
      "Unknown generator output 'sigmoid'; valid choices are: linear, tanh.",
    ),
    (
      dict(model__conditioning="film"),
      "Unknown conditioning 'film'; valid choices are: concat, none, projection.",
    ),
    (
      dict(model__gan__diff_augment="color,flip"),
      "Unknown DiffAugment policy 'flip'; valid choices are: color, cutout, translation.",
    ),
    (dict(model__gan__ema_decay=1.0), "model.gan.ema_decay is 1.0 (allowed: a number in [0, 1))"),
    (
      dict(model__gan__regularizer_weight=-1.0),
      "model.gan.regularizer_weight is -1.0 (allowed: a finite number >= 0)",
    ),
    (dict(model__gan__pack_size=0), "model.gan.pack_size is 0 (allowed: an integer >= 1)"),
    (
      dict(model__gan__pack_size=3),
      "train.batch_size=8 is not divisible by 3 (model.gan.pack_size=3 x discriminator_steps=1).",
    ),
    (
      dict(model__gan__pack_size=2, model__gan__discriminator_steps=3),
      "train.batch_size=8 is not divisible by 6 (model.gan.pack_size=2 x discriminator_steps=3).",
    ),
    (
      dict(model__gan__discriminator_steps=0),
      "model.gan.discriminator_steps is 0 (allowed: an integer >= 1)",
    ),
    (
      dict(model__gan__pack_size=2, model__conditioning="concat"),
      "PacGAN packing of a conditional GAN is not supported",
    ),
    (
      dict(model__gan__regularizer="r1", model__encoder__norm="batch"),
      "set model.encoder.norm='none' (no BatchNorm)",
    ),
  ],
)
def test_configs_that_cannot_work_fail_in_one_line(values, expected):
  config_mutation = _set(**values)

  def mutate(config):
    config.train.eval_batch_size = 64
    config_mutation(config)

  assert expected in _error(mutate)


def test_diff_augment_on_points_fails_in_one_line():
  assert "DiffAugment works on images, but the samples have shape (2,)" in _error(
    _set(model__gan__diff_augment="translation"), shape=(2,)
  )


def test_packs_split_across_devices_fail_in_one_line():
  config = _pacgan_points_config(2)
  config.train.batch_size = 6  # Divisible by 2, but 3 per device on 2 devices.
  with pytest.raises(
    ConfigError,
    match="per-device train.batch_size must be divisible by model.gan.pack_size = 2, got 3",
  ):
    helpers.run_steps(config, helpers.random_point_batches(1, 6), helpers.pmap_on(2))


def test_body_option_a_body_does_not_have_fails_in_one_line():
  config = tiny_gan_config()
  config.model.encoder = base.body("mlp", (4,), "relu", pieces=5)
  with pytest.raises(ConfigError, match="Body 'mlp' cannot take this config"):
    get_family(config, IMAGE_SHAPE)
  config.model.encoder = base.body("maxout", (4,), "maxout", kernel_init="normal_1")
  with pytest.raises(
    UnknownNameError,
    match="Unknown kernel initialiser 'normal_1'; valid choices are: lecun_normal, normal_0.02.",
  ):
    get_family(config, IMAGE_SHAPE).init(jax.random.PRNGKey(0))


def test_a_resumed_run_of_every_stateful_variant_equals_an_uninterrupted_one(tmp_path):
  """Spectral norm, EMA, DiffAugment, gradient penalty, 2 D steps, conditioning: all of their
  state and randomness survive a checkpoint."""

  def config(num_steps):
    c = _spectral_norm_config()
    c.model.conditioning = "concat"
    c.model.gan.update(
      dict(
        ema_decay=0.5,
        diff_augment="translation,cutout",
        loss="wasserstein",
        regularizer="gradient_penalty",
        discriminator_steps=2,
      )
    )
    c.train.num_steps = num_steps
    c.train.update(dict(eval_every=0, sample_every=0, log_every=1, num_samples=4))
    c.checkpoint.save_every = 2
    c.dataset.data_dir = str(tmp_path / "tfds")
    return c

  (tmp_path / "tfds").mkdir()  # config.dataset.data_dir must exist.
  training.train_and_evaluate(config(2), str(tmp_path / "resumed"))
  resumed = training.train_and_evaluate(config(4), str(tmp_path / "resumed"))
  uninterrupted = training.train_and_evaluate(config(4), str(tmp_path / "uninterrupted"))
  assert int(resumed["state"].step) == 4
  assert helpers.max_abs_difference(resumed["state"], uninterrupted["state"]) == 0.0
