"""`model.compute_dtype`: bfloat16 activations and products, float32 everything that is kept."""

import json

import flax
import jax
import numpy as np
import pytest

from aigc_jax import training
from aigc_jax.errors import UnknownNameError
from aigc_jax.training.family import get_family
from tests.training import helpers


def _config(family, body, compute_dtype):
  config = helpers.tiny_config(family, body)
  config.model.compute_dtype = compute_dtype
  return config


def _equations(jaxpr):
  """Every equation of a jaxpr and of the jaxprs nested in it (jit, shard_map, custom VJPs)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      for inner in param if isinstance(param, (tuple, list)) else (param,):
        inner = getattr(inner, "jaxpr", inner)
        if hasattr(inner, "eqns"):
          yield from _equations(inner)


def _product_dtypes(config):
  """Operand dtypes of every matrix product and convolution of one train step (traced only)."""
  batch = helpers.device_layout(helpers.random_batches(1, 8)[0], 1)
  family = get_family(config, batch["image"].shape[2:])
  step = helpers.shard_map_on(1).compile_train_step(family.train_step)
  key = jax.random.PRNGKey(1)
  traced = step.trace(jax.eval_shape(family.init, key), batch, key)
  return {
    str(v.aval.dtype)
    for eqn in _equations(traced.jaxpr.jaxpr)
    if eqn.primitive.name in ("dot_general", "conv_general_dilated")
    for v in eqn.invars
  }


def test_products_run_in_the_compute_dtype():
  """Every Dense, Conv and ConvTranspose product of a GAN step (both networks, forward and
  backward) takes bfloat16 operands, and none does by default."""
  assert helpers.tiny_config("gan", "conv").model.compute_dtype == "float32"  # The default.
  assert _product_dtypes(_config("gan", "conv", "float32")) == {"float32"}
  assert _product_dtypes(_config("gan", "conv", "bfloat16")) == {"bfloat16"}


@pytest.mark.parametrize("family,body", [("vae", "mlp"), ("gan", "conv")])
def test_bfloat16_keeps_float32_state_and_computes_the_same_function(family, body):
  """Parameters, optimiser and BatchNorm states stay float32; the metrics of the first steps
  (float32 losses of bfloat16 networks) are those of float32 to bfloat16's precision."""
  batches = helpers.random_batches(3, 16, shape=(8, 8, 1))
  state_16, metrics_16 = helpers.run_steps(
    _config(family, body, "bfloat16"), batches, helpers.shard_map_on(2)
  )
  state_32, metrics_32 = helpers.run_steps(
    _config(family, body, "float32"), batches, helpers.shard_map_on(2)
  )
  dtypes = {str(np.asarray(leaf).dtype) for leaf in jax.tree.leaves(state_16)}
  assert dtypes <= {"float32", "int32", "uint32"}, dtypes
  # The same checkpointed tree: a run can change its compute dtype and keep its checkpoints.
  as_saved = lambda state: jax.tree.structure(flax.serialization.to_state_dict(state))
  assert as_saved(state_16) == as_saved(state_32)
  for m16, m32 in zip(metrics_16, metrics_32):
    for name in m32:
      assert np.asarray(m16[name]).dtype == np.float32, name
      np.testing.assert_allclose(m16[name], m32[name], rtol=3e-2, atol=3e-3, err_msg=name)
  # Not the same numbers to the last bit: bfloat16 did run.
  assert any(m16[name] != m32[name] for m16, m32 in zip(metrics_16, metrics_32) for name in m32)


def test_bfloat16_trains_on_digits(tmp_path):
  config = _config("vae", "mlp", "bfloat16")
  config.dataset.data_dir = str(tmp_path / "tfds")
  (tmp_path / "tfds").mkdir()
  config.train.update(
    num_steps=120, log_every=10, eval_every=0, sample_every=0, batch_size=64, num_samples=8
  )
  result = training.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.isfinite(result["eval"]["loss"])
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    losses = [r["loss"] for r in map(json.loads, f) if r["split"] == "train"]
  assert len(losses) == 12 and all(np.isfinite(losses))
  assert losses[-1] < 0.7 * losses[0], losses


def test_unknown_compute_dtype_is_one_line():
  with pytest.raises(UnknownNameError, match="float16.*bfloat16"):
    get_family(_config("vae", "mlp", "float16"), (28, 28, 1))
