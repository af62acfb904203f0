"""The classifier family: the in-domain class oracle and feature space used for evaluation.

Loss (per example, nats): softmax cross-entropy -log softmax(logits)[label], averaged over the
global batch; accuracy = 1[argmax logits == label]. The network is `models.classifier`: an
encoder body with `config.model.feature_dim` outputs, the activation, then Dense(K), K the
dataset's number of classes. It neither samples nor reconstructs (`generate = reconstruct = None`).
"""

import functools

import jax.numpy as jnp
import ml_collections
import optax

from aigc_jax.models.classifier import Classifier
from aigc_jax.models.networks import build_encoder
from aigc_jax.training import noise, steps
from aigc_jax.training.family import FAMILIES, Family
from aigc_jax.training.state import TrainState


def _per_example_terms(state, params, batch, key, train):
  """Per-example `{"loss": [B], "accuracy": [B]}` and the updated batch_stats."""
  del key  # Deterministic: no dropout, no augmentation.
  if train:
    logits, batch_stats = state.apply_train(params, batch["image"])
  else:
    logits, batch_stats = state.apply_fn(state.variables(), batch["image"]), state.batch_stats
  labels = batch["label"]
  terms = {
    "loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels),
    "accuracy": (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32),
  }
  return terms, batch_stats


def build_classifier(
  model_cfg: ml_collections.ConfigDict, num_classes: int, batch_axis_name=noise.BATCH_AXIS
) -> Classifier:
  """The `Classifier` of the `config.model` section `model_cfg`, with `num_classes` outputs."""
  return Classifier(
    trunk=build_encoder(model_cfg.encoder, model_cfg.feature_dim, batch_axis_name),
    num_classes=num_classes,
    activation=model_cfg.encoder.activation,
  )


def make_classifier_family(
  model_cfg: ml_collections.ConfigDict,
  image_shape,
  *,
  num_classes: int,
  optimizer: optax.GradientTransformation,
) -> Family:
  """The classifier of the `config.model` section `model_cfg` over `num_classes` classes."""
  model = build_classifier(model_cfg, num_classes)

  def init(key):
    variables = model.init(key, jnp.zeros((1,) + tuple(image_shape), jnp.float32), train=False)
    return TrainState.create(
      apply_fn=model.apply,
      params=variables["params"],
      batch_stats=variables.get("batch_stats", {}),
      tx=optimizer,
    )

  return Family(
    init=init,
    train_step=functools.partial(steps.mean_loss_train_step, terms_fn=_per_example_terms),
    eval_step=functools.partial(steps.masked_eval_step, terms_fn=_per_example_terms),
    generate=None,
    reconstruct=None,
  )


FAMILIES.register("classifier")(make_classifier_family)
