"""A family builds from its `config.model` section alone (no experiment config), and gives the
same initial parameters and the same first step as `get_family` on the whole config."""

import jax
import ml_collections
import numpy as np
import optax
import pytest

from aigc_jax import config_rules
from aigc_jax.errors import ConfigError
from aigc_jax.training.family import build_family, get_family
from tests.training import helpers

SHAPE = (28, 28, 1)
NUM_CLASSES = 10  # digits28's, the dataset of `helpers.tiny_config`.


def _config(family):
  config = helpers.tiny_config(family)
  if family == "classifier":
    config.model.feature_dim = 16
  return config


def _section_only(config):
  """A copy of `config.model` that knows nothing of the rest of the config."""
  return ml_collections.ConfigDict(config.model.to_dict())


def _first_step(family, batch):
  parallel = helpers.pmap_on(1)
  state = parallel.put_state(family.init(jax.random.PRNGKey(0)))
  state, metrics = parallel.compile_train_step(family.train_step)(
    state, parallel.put_batch(helpers.device_layout(batch, 1)), jax.random.PRNGKey(1)
  )
  return jax.device_get(parallel.get_state(state)), jax.device_get(parallel.first_copy(metrics))


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", ["ae", "vae", "gan", "classifier"])
def test_a_family_built_from_its_model_section_matches_the_config_path(name):
  config = _config(name)
  # The base config's optimiser, written out: adam at a constant 1e-3.
  assert (config.optimizer.name, config.optimizer.schedule) == ("adam", "constant")
  optimizer = optax.adam(
    config.optimizer.learning_rate,
    b1=config.optimizer.b1,
    b2=config.optimizer.b2,
    eps=config.optimizer.eps,
  )
  from_section = build_family(
    _section_only(config), SHAPE, num_classes=NUM_CLASSES, optimizer=optimizer
  )
  from_config = get_family(config, SHAPE)

  _assert_trees_equal(
    helpers.parameters(from_section.init(jax.random.PRNGKey(0))),
    helpers.parameters(from_config.init(jax.random.PRNGKey(0))),
  )
  batch = helpers.random_batches(1, 8)[0]
  section_state, section_metrics = _first_step(from_section, batch)
  config_state, config_metrics = _first_step(from_config, batch)
  _assert_trees_equal(section_metrics, config_metrics)
  _assert_trees_equal(helpers.parameters(section_state), helpers.parameters(config_state))
  # The step trained something: a builder that ignored its optimiser would not move.
  initial = helpers.parameters(from_section.init(jax.random.PRNGKey(0)))
  assert any(
    not np.array_equal(x, y)
    for x, y in zip(jax.tree.leaves(initial), jax.tree.leaves(helpers.parameters(section_state)))
  )


def test_get_family_checks_the_ranges_of_what_it_reads_once_in_the_rules():
  """The one range (`config_rules.RULES`) refuses the value on the config path; the family
  builder itself holds no second copy of it."""
  config = _config("gan")
  config.model.gan.ema_decay = 1.0
  with pytest.raises(ConfigError) as info:
    get_family(config, SHAPE)
  assert str(info.value) == (
    "Invalid config value: model.gan.ema_decay is 1.0 (allowed: a number in [0, 1))."
  )
  with pytest.raises(ConfigError):
    config_rules.check_config(ml_collections.ConfigDict({"model": config.model.to_dict()}))


def test_get_family_ignores_a_data_dir_absent_here():
  """A saved run's config builds where its data directory does not exist."""
  config = _config("vae")
  config.dataset.data_dir = "/nonexistent-aigc-jax/tfds"
  get_family(config, SHAPE)
