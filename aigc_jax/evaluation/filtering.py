"""Rejection filtering of generated samples by a score, measured against exact validity.

A filter keeps a sample when its score is at least a threshold (higher = more trustworthy)
and drops the rest. On a dataset whose support is known exactly (`SupportCheck`), each
threshold has two exact outcomes: the fraction of hallucinations it removes and the fraction
of valid samples it keeps; over thresholds they trace the filtering curve. Aithal et al.
(2024) remove over 95% of hallucinations while keeping 96% of in-support samples with a
diffusion-specific score; the scores here work for any model:

* `manifold_realism_score`: how far inside the real data's k-NN manifold a sample's features
  lie (the realism score of Kynkaanniemi et al. 2019; >= 1 inside some real k-NN ball);
* `classifier_confidence`: the class oracle's top probability;
* a GAN discriminator's output: any [N] array the caller computes.

Everything here is numpy on the host (curves of a few thousand samples).
"""

import dataclasses
from typing import Optional, Sequence

import jax
import numpy as np

from aigc_jax.evaluation import distribution


@dataclasses.dataclass(frozen=True)
class FilteringCurve:
  """Outcomes of keeping `score >= threshold`, one entry per threshold.

  Attributes:
    thresholds: [T] float64, ascending.
    kept_fraction: [T] fraction of all samples kept.
    valid_kept_fraction: [T] fraction of valid samples kept (NaN when there are none).
    hallucinations_removed_fraction: [T] fraction of invalid samples dropped (NaN when
      there are none).
    num_valid, num_hallucinated: counts over the N samples.
  """

  thresholds: np.ndarray
  kept_fraction: np.ndarray
  valid_kept_fraction: np.ndarray
  hallucinations_removed_fraction: np.ndarray
  num_valid: int
  num_hallucinated: int

  def as_dict(self) -> dict:
    """Lists of Python numbers, for JSON."""
    return {
      "thresholds": self.thresholds.tolist(),
      "kept_fraction": self.kept_fraction.tolist(),
      "valid_kept_fraction": self.valid_kept_fraction.tolist(),
      "hallucinations_removed_fraction": self.hallucinations_removed_fraction.tolist(),
      "num_valid": self.num_valid,
      "num_hallucinated": self.num_hallucinated,
    }


def _scores_and_flags(scores, valid) -> tuple[np.ndarray, np.ndarray]:
  scores = np.asarray(scores, np.float64).reshape(-1)
  valid = np.asarray(valid)
  if valid.dtype != np.bool_ or valid.shape != scores.shape:
    raise ValueError(
      f"valid must be [N] bool matching scores [N] = {scores.shape}, got "
      f"{valid.dtype} {valid.shape}"
    )
  if not len(scores):
    raise ValueError("no samples to filter.")
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN; a filter cannot rank those samples.")
  return scores, valid


def filtering_curve(scores, valid, thresholds: Optional[Sequence[float]] = None) -> FilteringCurve:
  """The filtering curve of `keep = scores >= threshold` against exact validity.

  Args:
    scores: [N] float, N >= 1, higher = more trustworthy.
    valid: [N] bool, True = in the data's support (from a `SupportCheck`).
    thresholds: [T]; None uses every distinct score (the whole curve: the smallest keeps
      everything) and +inf (keeps nothing).

  Returns:
    A `FilteringCurve` with thresholds sorted ascending.
  """
  scores, valid = _scores_and_flags(scores, valid)
  if thresholds is None:
    thresholds = np.append(np.unique(scores), np.inf)
  thresholds = np.sort(np.asarray(thresholds, np.float64).reshape(-1))
  kept = scores[None, :] >= thresholds[:, None]  # [T, N]
  num_valid, num_invalid = int(valid.sum()), int((~valid).sum())
  valid_kept = kept[:, valid].sum(axis=1)
  invalid_kept = kept[:, ~valid].sum(axis=1)
  valid_kept_fraction = valid_kept / num_valid if num_valid else np.full(len(thresholds), np.nan)
  removed = 1.0 - invalid_kept / num_invalid if num_invalid else np.full(len(thresholds), np.nan)
  return FilteringCurve(
    thresholds=thresholds,
    kept_fraction=kept.mean(axis=1),
    valid_kept_fraction=valid_kept_fraction,
    hallucinations_removed_fraction=removed,
    num_valid=num_valid,
    num_hallucinated=num_invalid,
  )


def threshold_keeping_valid(scores, valid, valid_kept: float = 0.96) -> float:
  """The largest threshold that keeps at least `valid_kept` of the valid samples.

  Keeping `score >= t` keeps the valid samples whose score is at least t; this returns the
  ceil(valid_kept * V)-th largest valid score (V valid samples), so exactly that many or
  more (ties) are kept. Reported beside Aithal et al.'s operating point (96% kept).

  Args:
    scores: [N] float; valid: [N] bool with at least one True.
    valid_kept: in (0, 1].
  """
  scores, valid = _scores_and_flags(scores, valid)
  if not 0.0 < valid_kept <= 1.0:
    raise ValueError(f"valid_kept must be in (0, 1], got {valid_kept}")
  valid_scores = np.sort(scores[valid])[::-1]
  if not len(valid_scores):
    raise ValueError("no valid samples: the fraction of valid samples kept is undefined.")
  # The 1e-9 absorbs rounding: 0.96 * 25 is 24.000000000000004, and 24 samples is enough.
  needed = int(np.ceil(valid_kept * len(valid_scores) - 1e-9))
  return float(valid_scores[max(needed, 1) - 1])


def manifold_realism_score(
  real_feats: jax.Array,
  fake_feats: jax.Array,
  k: int = 3,
  *,
  prune_percentile: Optional[float] = 50.0,
) -> np.ndarray:
  """Distance to the real data's manifold as a score: the realism score of each sample.

  R(y) = max_i NND_k(x_i) / ||y - x_i|| over real features x_i (with radii above the
  `prune_percentile` left out, as in Kynkaanniemi et al. 2019); see
  `distribution.realism_score`. R >= 1 iff y lies in a kept real k-NN ball; it falls as y
  moves away from the real data, so `score >= 1` is the manifold test itself.

  Args:
    real_feats: [N, D] features of real data (N > k); fake_feats: [M, D].

  Returns:
    [M] float64 scores, higher = closer to the real data.
  """
  return np.asarray(
    distribution.realism_score(real_feats, fake_feats, k, prune_percentile=prune_percentile),
    np.float64,
  )


def classifier_confidence(probabilities) -> np.ndarray:
  """The class oracle's top probability: [N, K] probabilities -> [N] float64 in [1/K, 1]."""
  probabilities = np.asarray(probabilities, np.float64)
  if probabilities.ndim != 2:
    raise ValueError(f"probabilities must be [N, K], got shape {probabilities.shape}")
  return probabilities.max(axis=1)


def trajectory_variance_score(x0_hats) -> np.ndarray:
  """Aithal et al. (2024)'s filter score: minus the variance over the last reverse steps of a
  diffusion model's predicted clean sample, averaged over coordinates (higher = more
  trustworthy). Samples that interpolate between modes see their prediction swing between
  modes late in the trajectory; samples inside a mode settle early.

  Args:
    x0_hats: [S, N, ...] the predicted clean samples of the last S reverse steps (the
      authors' S = 10), as `diffusion.make_sampler(...)(state, key, N, S)` returns them.

  Returns:
    [N] float64: -mean over coordinates of the variance over steps (ddof 0, as the authors').
  """
  x0_hats = np.asarray(x0_hats, np.float64)
  if x0_hats.ndim < 2 or x0_hats.shape[0] < 2:
    raise ValueError(f"x0_hats must be [S >= 2, N, ...], got shape {x0_hats.shape}")
  variance = x0_hats.var(axis=0).reshape(x0_hats.shape[1], -1)
  return -variance.mean(axis=1)
