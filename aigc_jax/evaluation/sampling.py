"""Drawing samples and reconstructions from a trained family, a fixed-size batch at a time.

Both entry points sample through here (`experiments.evaluate` and the hallucination
benchmark), so a sample set depends only on (state, num, key, batch_size, labels): batch i
is `family.generate(state, fold_in(key, i), batch_size, labels_i)`, every call of the same
size (one compilation; the last batch is cut), and reconstructions are of zero-padded
batches of `batch_size` inputs (a family reconstructs each input on its own, so padding
changes nothing but the compiled shape).
"""

from typing import Any, Callable, Optional

import jax
import numpy as np
import tqdm


def in_batches(fn: Callable[..., Any], batch_size: int, *arrays: np.ndarray) -> np.ndarray:
  """`fn(*batches)` over fixed-size, zero-padded batches of `arrays` `[N, ...]`; `[N, ...]`."""
  outputs = []
  for start in range(0, len(arrays[0]), batch_size):
    chunks = [a[start : start + batch_size] for a in arrays]
    padded = [
      np.concatenate([c, np.zeros((batch_size - len(c),) + c.shape[1:], c.dtype)]) for c in chunks
    ]
    outputs.append(np.asarray(fn(*padded))[: len(chunks[0])])
  return np.concatenate(outputs)


def generate(
  family, state, num: int, key: jax.Array, batch_size: int, labels: Optional[np.ndarray] = None
) -> np.ndarray:
  """`[num, *sample_shape]` samples of `family` at `state`.

  Args:
    key: batch i uses `fold_in(key, i)`.
    batch_size: samples per compiled call; every call draws this many.
    labels: `[num]` int32 requested classes of a conditional family (None: unconditional);
      the last batch's labels are repeated to fill it.
  """
  batches = []
  for index in tqdm.trange(
    -(-num // batch_size), desc="sampling", leave=False, disable=None
  ):  # None: no bar where stderr is not a terminal.
    batch_key = jax.random.fold_in(key, index)
    if labels is None:
      batches.append(np.asarray(family.generate(state, batch_key, batch_size)))
    else:
      batch_labels = np.resize(labels[index * batch_size : (index + 1) * batch_size], batch_size)
      batches.append(np.asarray(family.generate(state, batch_key, batch_size, batch_labels)))
  return np.concatenate(batches)[:num]


def reconstruct(
  family, state, inputs: np.ndarray, labels: np.ndarray, key: jax.Array, batch_size: int
) -> np.ndarray:
  """Reconstructions `[N, *sample_shape]` of `inputs` `[N, *sample_shape]`; a conditional
  family reconstructs under `labels` `[N]` int32 (an unconditional one ignores them)."""
  if family.conditional:
    return in_batches(
      lambda x, y: family.reconstruct(state, x, key, y),
      batch_size,
      inputs,
      np.asarray(labels, np.int32),
    )
  return in_batches(lambda x: family.reconstruct(state, x, key), batch_size, inputs)
