"""Seeds trained together (vmap over seeds, scan over steps) == each seed trained alone."""

import jax
import numpy as np
import pytest

from aigc_jax.training import multi_seed
from aigc_jax.training.family import get_family
from tests.training import helpers

NUM_STEPS = 4
BATCH = 8


def _data(shape, n=64, seed=0):
  rng = np.random.RandomState(seed)
  return (rng.rand(n, *shape).astype(np.float32), rng.randint(0, 10, n).astype(np.int32))


def _alone(config, shape, samples, labels, seed, num_steps):
  """One seed through the training loop's machinery: pmap on one device, batches on the host."""
  family = get_family(config, shape)
  keys = multi_seed.seed_keys([seed])
  parallel = helpers.pmap_on(1)
  state = parallel.put_state(family.init(keys["init"][0]))
  step = parallel.compile_train_step(family.train_step)
  losses = []
  for t in range(num_steps):
    batch = jax.device_get(multi_seed.draw_batch(samples, labels, keys["data"][0], t, BATCH))
    state, metrics = step(
      state, parallel.put_batch(helpers.device_layout(batch, 1)), keys["train"][0]
    )
    losses.append(jax.device_get(parallel.first_copy(metrics)))
  return jax.device_get(parallel.get_state(state)), losses


@pytest.mark.parametrize(
  "family,body,shape,learning_rate", [("vae", "mlp", (28, 28, 1), 1e-3), ("gan", "mlp", (2,), 0.05)]
)
def test_seeds_together_equal_seeds_alone(family, body, shape, learning_rate):
  config = helpers.tiny_config(family, body)
  config.optimizer.name = "sgd"  # See tests/training/test_parallel.py: Adam and BatchNorm biases.
  config.optimizer.learning_rate = learning_rate
  samples, labels = _data(shape)
  trainer = multi_seed.MultiSeedTrainer(
    get_family(config, shape), samples, labels, batch_size=BATCH, seeds=[3, 7]
  )
  states, metrics = trainer.run(trainer.init(), NUM_STEPS)
  states = jax.device_get(states)
  for index, seed in enumerate([3, 7]):
    alone, alone_metrics = _alone(config, shape, samples, labels, seed, NUM_STEPS)
    together = multi_seed.select_seed(states, index)
    assert int(together.step) == NUM_STEPS
    assert helpers.max_abs_difference(together, alone) < 2e-5
    for name in alone_metrics[0]:
      np.testing.assert_allclose(
        np.asarray(metrics[name])[index], [m[name] for m in alone_metrics], rtol=2e-5, atol=2e-5
      )
  # The two seeds really differ.
  assert (
    helpers.max_abs_difference(
      multi_seed.select_seed(states, 0).params
      if family != "gan"
      else multi_seed.select_seed(states, 0),
      multi_seed.select_seed(states, 1).params
      if family != "gan"
      else multi_seed.select_seed(states, 1),
    )
    > 1e-3
  )


def test_chunks_continue_exactly():
  config = helpers.tiny_config("vae")
  samples, labels = _data((28, 28, 1))
  trainer = multi_seed.MultiSeedTrainer(
    get_family(config, (28, 28, 1)), samples, labels, batch_size=BATCH, seeds=[0, 1, 2]
  )
  whole, whole_metrics = trainer.run(trainer.init(), 6)
  part, first = trainer.run(trainer.init(), 2)
  part, second = trainer.run(part, 4)
  assert helpers.max_abs_difference(jax.device_get(whole), jax.device_get(part)) == 0.0
  np.testing.assert_array_equal(
    np.concatenate([first["loss"], second["loss"]], axis=1), whole_metrics["loss"]
  )


def test_a_seed_does_not_depend_on_its_companions():
  config = helpers.tiny_config("vae")
  samples, labels = _data((28, 28, 1))
  family = get_family(config, (28, 28, 1))
  run = lambda seeds: jax.device_get(
    multi_seed.MultiSeedTrainer(family, samples, labels, batch_size=BATCH, seeds=seeds).run(
      multi_seed.MultiSeedTrainer(family, samples, labels, BATCH, seeds).init(), 3
    )[0]
  )
  pair, single = run([5, 9]), run([9])
  assert (
    helpers.max_abs_difference(multi_seed.select_seed(pair, 1), multi_seed.select_seed(single, 0))
    < 1e-6
  )


def test_batches_are_drawn_with_replacement_from_the_data():
  samples = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
  labels = np.arange(10, dtype=np.int32)
  key = jax.random.PRNGKey(0)
  batch = jax.device_get(multi_seed.draw_batch(samples, labels, key, 0, 200))
  np.testing.assert_array_equal(batch["image"][:, 0], batch["label"])  # Rows stay whole.
  counts = np.bincount(batch["label"], minlength=10)
  assert counts.min() > 5 and counts.max() < 40  # Uniform over the rows (200 draws of 10).
  assert len(np.unique(batch["label"])) == 10
  other = jax.device_get(multi_seed.draw_batch(samples, labels, key, 1, 200))
  assert not np.array_equal(batch["label"], other["label"])


def test_generate_stacks_every_seed():
  config = helpers.tiny_config("vae")
  samples, labels = _data((28, 28, 1))
  family = get_family(config, (28, 28, 1))
  trainer = multi_seed.MultiSeedTrainer(family, samples, labels, BATCH, seeds=[0, 1])
  states = trainer.init()
  key = jax.random.PRNGKey(4)
  stacked = np.asarray(trainer.generate(states, key, 5))
  assert stacked.shape == (2, 5, 28, 28, 1)
  for index in range(2):
    np.testing.assert_allclose(
      stacked[index],
      family.generate(multi_seed.select_seed(states, index), key, 5),
      rtol=1e-5,
      atol=1e-6,
    )


def test_seed_groups_and_python_steps_equal_one_scanned_call():
  """seeds_per_call=1 with scan_steps=False (the CPU path of conv models) runs the same
  update rule as all seeds under one scan: same states and per-step metrics."""
  config = helpers.tiny_config("vae")
  samples, labels = _data((28, 28, 1))
  family = get_family(config, (28, 28, 1))
  seeds = [2, 5, 11]
  whole = multi_seed.MultiSeedTrainer(family, samples, labels, BATCH, seeds)
  grouped = multi_seed.MultiSeedTrainer(
    family, samples, labels, BATCH, seeds, seeds_per_call=2, scan_steps=False
  )
  states_a, metrics_a = whole.run(whole.init(), 3)
  states_b, metrics_b = grouped.run(grouped.init(), 3)
  assert helpers.max_abs_difference(jax.device_get(states_a), jax.device_get(states_b)) < 1e-6
  assert np.asarray(metrics_b["loss"]).shape == (3, 3)
  np.testing.assert_allclose(metrics_a["loss"], metrics_b["loss"], rtol=1e-6, atol=1e-6)
  assert int(multi_seed.select_seed(states_b, 2).step) == 3
  with pytest.raises(ValueError, match="seeds_per_call"):
    multi_seed.MultiSeedTrainer(family, samples, labels, BATCH, seeds, seeds_per_call=0)


@pytest.mark.parametrize(
  "family,shape,schedule",
  [("gan", (2,), "constant"), ("vae", (28, 28, 1), "warmup_linear_decay")],
)
def test_a_learning_rate_sweep_member_equals_its_seed_alone_at_its_rate(family, shape, schedule):
  """2 seeds x 2 learning rates in one compiled call; member (seed, rate) == the seed trained
  alone with `config.optimizer.learning_rate = rate` (Adam, b1 0.5; the VAE with a warm-up
  and a decay, which scale with the rate too)."""
  config = helpers.tiny_config(family, "mlp")
  config.optimizer.b1 = 0.5
  config.optimizer.schedule = schedule
  config.optimizer.warmup_steps = 1
  config.optimizer.decay_fraction = 0.5
  samples, labels = _data(shape)
  seeds, rates = [3, 7], [1e-3, 2e-2]
  sweep = multi_seed.MultiSeedTrainer(
    multi_seed.sweep_family(config, shape),
    samples,
    labels,
    batch_size=BATCH,
    seeds=seeds,
    learning_rates=rates,
  )
  assert sweep.members == ((3, 1e-3), (3, 2e-2), (7, 1e-3), (7, 2e-2))
  states, metrics = sweep.run(sweep.init(), NUM_STEPS)
  states = jax.device_get(states)
  # One rate alone suffices: with it equal and the other member different (below), a
  # mix-up of the members' rates fails. (Each alone run is one more compilation.)
  for rate in rates[1:]:
    config.optimizer.learning_rate = rate
    alone = multi_seed.MultiSeedTrainer(
      get_family(config, shape), samples, labels, batch_size=BATCH, seeds=seeds
    )
    alone_states, alone_metrics = alone.run(alone.init(), NUM_STEPS)
    alone_states = jax.device_get(alone_states)
    for seed_index, seed in enumerate(seeds):
      member = sweep.member_index(seed, rate)
      assert (
        helpers.max_abs_difference(
          helpers.parameters(multi_seed.select_seed(states, member)),
          helpers.parameters(multi_seed.select_seed(alone_states, seed_index)),
        )
        < 1e-6
      )
      for name, values in alone_metrics.items():
        np.testing.assert_allclose(
          np.asarray(metrics[name])[member], np.asarray(values)[seed_index], rtol=1e-5, atol=1e-6
        )
  # The rates really differ: a seed's two members part.
  assert (
    helpers.max_abs_difference(
      helpers.parameters(multi_seed.select_seed(states, 0)),
      helpers.parameters(multi_seed.select_seed(states, 1)),
    )
    > 1e-3
  )


def test_a_sweep_needs_a_sweep_family():
  config = helpers.tiny_config("vae")
  samples, labels = _data((28, 28, 1))
  trainer = multi_seed.MultiSeedTrainer(
    get_family(config, (28, 28, 1)), samples, labels, BATCH, seeds=[0], learning_rates=[1e-3]
  )
  with pytest.raises(ValueError, match="build the family with multi_seed.sweep_family"):
    trainer.init()
  with pytest.raises(ValueError, match="learning_rates must be rates > 0"):
    multi_seed.MultiSeedTrainer(
      get_family(config, (28, 28, 1)), samples, labels, BATCH, seeds=[0], learning_rates=[0.0]
    )
