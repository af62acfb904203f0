"""Sampling an autoencoder by ex-post density estimation of its codes (a latent GMM).

Ghosh, Sajjadi, Vergari, Black & Schölkopf, "From Variational to Deterministic Autoencoders"
(ICLR 2020), section 4: fit a Gaussian mixture to the codes of the training data, draw codes
from it and decode them. This turns a plain autoencoder into a generative model and, for a
VAE, samples where the codes are rather than from the N(0, I) prior, whose holes decode to
blends. The paper uses 10 full-covariance components.

Both functions are deterministic given `seed`.
"""

import warnings

import jax.numpy as jnp
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

NUM_COMPONENTS = 10  # Ghosh et al. 2020.
MAX_FIT_CODES = 10_000  # Codes of at most this many training samples are fitted.
BATCH = 500


def fit(codes: np.ndarray, num_components: int = NUM_COMPONENTS, seed: int = 0) -> GaussianMixture:
  """A full-covariance Gaussian mixture fitted to `codes [N, latent_dim]` (float64)."""
  codes = np.asarray(codes, np.float64)
  if len(codes) < num_components:
    raise ValueError(
      f"A latent GMM of {num_components} components needs at least that many "
      f"codes, got {len(codes)}."
    )
  with warnings.catch_warnings():
    # EM stopped at max_iter still gives a valid mixture to sample from; the warning is noise.
    warnings.simplefilter("ignore", ConvergenceWarning)
    return GaussianMixture(
      n_components=num_components,
      covariance_type="full",
      reg_covar=1e-6,
      max_iter=200,
      random_state=seed,
    ).fit(codes)


def sample_codes(mixture: GaussianMixture, num: int, seed: int = 0) -> np.ndarray:
  """`num` codes `[num, latent_dim]` float32 drawn from `mixture`, in random order."""
  mixture.random_state = seed
  codes, _ = mixture.sample(num)  # Grouped by component: shuffled below.
  return codes[np.random.default_rng(seed).permutation(num)].astype(np.float32)


def generate(
  family,
  state,
  train_samples: np.ndarray,
  num: int,
  num_components: int = NUM_COMPONENTS,
  seed: int = 0,
) -> np.ndarray:
  """`num` samples `[num, *sample_shape]`: decoded draws of a GMM of the training codes.

  Args:
    family: an unconditional family with `encode` and `decode` (AE, VAE and their variants).
    state: its trained state (single device).
    train_samples: `[N, *sample_shape]` training data; the first `MAX_FIT_CODES` are encoded.
  """
  if family.encode is None or family.conditional:
    raise ValueError(
      "Latent-GMM sampling needs an unconditional family with an encoder "
      "(ae, vae and their unconditional variants)."
    )
  inputs = train_samples[:MAX_FIT_CODES]
  codes = np.concatenate(
    [
      np.asarray(family.encode(state, jnp.asarray(inputs[i : i + BATCH])))
      for i in range(0, len(inputs), BATCH)
    ]
  )
  codes = sample_codes(fit(codes, num_components, seed), num, seed)
  return np.concatenate(
    [
      np.asarray(family.decode(state, jnp.asarray(codes[i : i + BATCH])))
      for i in range(0, num, BATCH)
    ]
  )
