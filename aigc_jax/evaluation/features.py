"""Feature extractors: images -> feature vectors (for the distribution metrics and the manifold
hallucination rate) and, when the network has a class head, class probabilities (the oracle of
the class-based hallucination rates).

`FeatureExtractor` is the interface. A subclass implements the per-batch functions
`_features_batch(variables, images)` (and `_probabilities_batch` if it has a head) on a
fixed batch of `batch_size` images; the base class jits them, pads the last batch with zeros
so that every call has the same shape (one compilation), and cuts the padding off again.

`ClassifierFeatureExtractor` wraps the in-domain classifier (`models.classifier.Classifier`,
trained by the "classifier" family): features are its penultimate activations, probabilities
the softmax of its logits; it receives a loaded model (`from_state`) and loads none itself.
`IdentityFeatureExtractor` is the feature space of low-dimensional points (the 2-D
mixtures): the coordinates themselves. An Inception-v3 extractor loaded from a local weights
file fits the same interface: resize and rescale inside `_features_batch`, and
`num_classes = None` when only the pool features are wanted.
"""

import abc
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

DEFAULT_BATCH_SIZE = 256


class FeatureExtractor(abc.ABC):
  """images `[N, H, W, C]` float in [0, 1] -> features `[N, D]` (and probabilities `[N, K]`).

  Class attribute `input_rank`: the rank of a batch of inputs, 4 for images `[N, H, W, C]`;
  an extractor of other samples (points `[N, D]`) sets its own.

  Attributes:
    variables: the network's weights, a pytree passed to the per-batch functions as an
      argument (not baked into the compiled function as constants).
    batch_size: images per compiled call; the last batch is zero-padded to this size.
    num_classes: K, or None for an extractor without a class head.
  """

  input_rank = 4
  input_layout = "[N, H, W, C]"

  def __init__(
    self, variables: Any, batch_size: int = DEFAULT_BATCH_SIZE, num_classes: Optional[int] = None
  ):
    if batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    self.variables = variables
    self.batch_size = batch_size
    self.num_classes = num_classes
    self._jitted_features = jax.jit(self._features_batch)
    self._jitted_probabilities = jax.jit(self._probabilities_batch)

  @abc.abstractmethod
  def _features_batch(self, variables: Any, images: jax.Array) -> jax.Array:
    """`[batch_size, H, W, C]` in [0, 1] -> `[batch_size, D]` float32; jittable."""

  def _probabilities_batch(self, variables: Any, images: jax.Array) -> jax.Array:
    """`[batch_size, H, W, C]` in [0, 1] -> `[batch_size, K]` float32, rows sum to 1."""
    raise NotImplementedError(f"{type(self).__name__} has no class head (num_classes=None).")

  @property
  def has_class_oracle(self) -> bool:
    """Whether `probabilities` is available."""
    return self.num_classes is not None

  def features(self, images) -> jax.Array:
    """Feature vectors `[N, D]` float32 of images `[N, H, W, C]` float in [0, 1]."""
    return self._map_batches(self._jitted_features, images)

  def probabilities(self, images) -> jax.Array:
    """Class probabilities `[N, K]` float32 (the class oracle) of images `[N, H, W, C]`."""
    if not self.has_class_oracle:
      raise NotImplementedError(
        f"{type(self).__name__} has no class head, so it cannot be a class oracle; use an "
        "extractor with num_classes set (e.g. ClassifierFeatureExtractor)."
      )
    return self._map_batches(self._jitted_probabilities, images)

  def _map_batches(self, batch_fn: Callable[[Any, jax.Array], jax.Array], images) -> jax.Array:
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != self.input_rank:
      raise ValueError(
        f"inputs of {type(self).__name__} must be {self.input_layout}, got shape {images.shape}"
      )
    num_images = images.shape[0]
    num_batches = max(-(-num_images // self.batch_size), 1)  # N = 0 still gives the width.
    padded = jnp.pad(
      images, [(0, num_batches * self.batch_size - num_images)] + [(0, 0)] * (images.ndim - 1)
    )
    outputs = [
      batch_fn(self.variables, padded[i * self.batch_size : (i + 1) * self.batch_size])
      for i in range(num_batches)
    ]
    return jnp.concatenate(outputs, axis=0)[:num_images].astype(jnp.float32)


class ClassifierFeatureExtractor(FeatureExtractor):
  """Penultimate features and softmax probabilities of a trained `Classifier`.

  Args:
    apply_fn: the classifier's flax `Module.apply` (a train state's `apply_fn`).
    variables: its variables, `{"params": ..., "batch_stats": ...}` (one copy, not replicated).
    num_classes: K, the width of the logits.
    batch_size: images per compiled call.
  """

  def __init__(
    self,
    apply_fn: Callable[..., Any],
    variables: dict,
    num_classes: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
  ):
    self._apply_fn = apply_fn
    super().__init__(variables, batch_size=batch_size, num_classes=num_classes)

  @classmethod
  def from_state(cls, state, batch_size: int = DEFAULT_BATCH_SIZE) -> "ClassifierFeatureExtractor":
    """From a classifier train state on the host (one copy): `results["state"]` of
    `train_and_evaluate`, or `aigc_jax.inference.load_classifier(workdir)` of a saved run."""
    variables = {"params": state.params}
    if state.batch_stats:
      variables["batch_stats"] = state.batch_stats
    num_classes = state.params["head"]["kernel"].shape[-1]
    return cls(state.apply_fn, variables, num_classes, batch_size)

  def _features_batch(self, variables, images):
    return self._apply_fn(variables, images, method="features").astype(jnp.float32)

  def _probabilities_batch(self, variables, images):
    return jax.nn.softmax(self._apply_fn(variables, images).astype(jnp.float32), axis=-1)


class IdentityFeatureExtractor(FeatureExtractor):
  """Points `[N, D]` -> the same coordinates as features `[N, D]` float32; no class head.

  For low-dimensional samples whose coordinates are already the natural feature space (the
  2-D Gaussian mixtures), so the distribution metrics and the manifold hallucination rate
  run on the points themselves.
  """

  input_rank = 2
  input_layout = "[N, D]"

  def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE):
    super().__init__(variables=None, batch_size=batch_size, num_classes=None)

  def _features_batch(self, variables, images):
    del variables  # No weights.
    return images.astype(jnp.float32)
