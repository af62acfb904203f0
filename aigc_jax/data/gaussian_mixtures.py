"""2-D Gaussian mixtures with exactly known support, as a TensorFlow-free tfds builder.

The two mixtures used to study mode collapse, with the settings of the PacGAN authors' code
(Lin, Khetan, Fanti & Oh, NeurIPS 2018; fjxmlzn/PacGAN, `synthetic_data_experiments/
2DRing_GAN&PacGAN/config.py` and `2DGrid_GAN&PacGAN/config.py`), uniform weights:

* `ring8`: 8 modes at (cos 2 pi k / 8, sin 2 pi k / 8), radius 1, standard deviation 0.01.
* `grid25`: 25 modes at {-4, -2, 0, 2, 4}^2, standard deviation 0.05.

Registered as tfds `gaussian_mixtures/ring8` and `gaussian_mixtures/grid25`. Features:
point: [2] float32; label: ClassLabel(num_modes), the mode the point was drawn from.
Splits: `train` holds 100,000 points drawn once (the protocol's training set), `test`
25,000 more, drawn independently (for real-data floors).

Validity ("high quality" in PacGAN's words): a point is valid when its diagonal Mahalanobis
distance to the nearest mode, sqrt(sum_d ((x_d - mu_kd) / sigma_kd)^2), is below 3, as in
the authors' `MetricLogger` (strict `<`). The floor: a point of the true isotropic 2-D
mixture is valid with probability P(chi2_2 < 9) = 1 - exp(-4.5) = 0.98889 (the modes are
far apart, so the nearest mode is its own), not the 1-D 99.73%.

Determinism: every split is a pure function of a seed derived from its name. The random
numbers are the raw 64-bit words of numpy's PCG64 (a stream numpy keeps stable across
versions), turned into uniforms exactly, mode indices by floor(u * K), and normal pairs by
Box-Muller in float64; coordinates are rounded to multiples of 2^-20 before they are stored
as float32 (exact: |x| < 8 needs 23 bits), so a last-bit difference between the libms of
two machines changes a stored value only with probability about 1e-10 each.
"""

import dataclasses
import hashlib
import itertools
from typing import Dict, Tuple

import numpy as np
import tensorflow_datasets as tfds

HIGH_QUALITY_THRESHOLD = 3.0  # Standard deviations (PacGAN's `dis_thre`).
# P(chi2_2 < 9) = 1 - exp(-9 / 2): the valid fraction of samples of the true mixture.
TRUE_MIXTURE_VALID_FRACTION = float(1.0 - np.exp(-(HIGH_QUALITY_THRESHOLD**2) / 2.0))
SPLIT_SIZES = {"train": 100_000, "test": 25_000}
_QUANTUM = 2.0**-20


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture:
  """An equal-weight mixture of isotropic Gaussians with known modes.

  Attributes:
    name: the tfds config name (`ring8`, `grid25`).
    means: [K, D] float64 mode centres.
    std: the standard deviation of every mode in every direction.
  """

  name: str
  means: np.ndarray
  std: float

  @property
  def num_modes(self) -> int:
    return self.means.shape[0]

  @property
  def dimension(self) -> int:
    return self.means.shape[1]

  @property
  def stds(self) -> np.ndarray:
    """[K, D] float64 per-mode, per-coordinate standard deviations (all `std`)."""
    return np.full(self.means.shape, self.std)

  def sample(self, num_samples: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Draws points deterministically (see the module docstring).

    Returns:
      points [num_samples, D] float32 (multiples of 2^-20), modes [num_samples] int32.
    """
    if self.dimension != 2:
      raise NotImplementedError("Box-Muller here draws exactly two coordinates per point.")
    words = np.random.PCG64(seed).random_raw(3 * num_samples).reshape(num_samples, 3)
    # The top 53 bits of a word, centred in their cell: uniforms in (0, 1), exactly.
    uniforms = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    modes = np.minimum(np.floor(uniforms[:, 0] * self.num_modes), self.num_modes - 1).astype(
      np.int32
    )
    radius = np.sqrt(-2.0 * np.log(uniforms[:, 1]))
    angle = 2.0 * np.pi * uniforms[:, 2]
    normal = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    points = self.means[modes] + self.std * normal
    return (np.round(points / _QUANTUM) * _QUANTUM).astype(np.float32), modes

  def nearest_mode(self, points) -> Tuple[np.ndarray, np.ndarray]:
    """Nearest mode by diagonal Mahalanobis distance, in float64.

    Args:
      points: [N, D].

    Returns:
      (modes [N] int64, distances [N] float64 in standard deviations).
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != self.dimension:
      raise ValueError(
        f"{self.name} samples must be points [N, {self.dimension}], got shape {points.shape}"
      )
    squared = np.sum(((points[:, None, :] - self.means[None]) / self.stds[None]) ** 2, axis=-1)
    modes = np.argmin(squared, axis=1)
    return modes, np.sqrt(squared[np.arange(len(points)), modes])

  def support_check(self, points) -> np.ndarray:
    """`SupportCheck`: [N, D] -> [N] bool, True when within 3 standard deviations of a mode."""
    return self.nearest_mode(points)[1] < HIGH_QUALITY_THRESHOLD

  def reconstruction_check(self, inputs, reconstructions) -> np.ndarray:
    """[N] bool: the reconstruction is high quality and its nearest mode is the input's."""
    input_modes, _ = self.nearest_mode(inputs)
    modes, distances = self.nearest_mode(reconstructions)
    return (distances < HIGH_QUALITY_THRESHOLD) & (modes == input_modes)


RING8 = GaussianMixture(
  "ring8",
  np.array([[np.cos(2 * np.pi * k / 8), np.sin(2 * np.pi * k / 8)] for k in range(8)]),
  0.01,
)
GRID25 = GaussianMixture(
  "grid25", np.array(list(itertools.product(range(-4, 5, 2), repeat=2)), np.float64), 0.05
)
MIXTURES: Dict[str, GaussianMixture] = {m.name: m for m in (RING8, GRID25)}


def split_seed(mixture_name: str, split: str) -> int:
  """The PCG64 seed of a split: the first 8 bytes of SHA-256("gaussian_mixtures/<name>/<split>")."""
  digest = hashlib.sha256(f"gaussian_mixtures/{mixture_name}/{split}".encode()).digest()
  return int.from_bytes(digest[:8], "little")


def split_points(mixture_name: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
  """The stored split, computed directly: (points [N, 2] float32, modes [N] int32)."""
  return MIXTURES[mixture_name].sample(SPLIT_SIZES[split], split_seed(mixture_name, split))


class GaussianMixturesConfig(tfds.core.BuilderConfig):
  """A config naming one mixture."""

  def __init__(self, *, mixture: GaussianMixture, **kwargs):
    super().__init__(name=mixture.name, **kwargs)
    self.mixture = mixture


class GaussianMixtures(tfds.core.GeneratorBasedBuilder):
  """PacGAN's 2-D ring and grid mixtures; see the module docstring."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: ring8 and grid25, 100,000 train / 25,000 test."}
  BUILDER_CONFIGS = [
    GaussianMixturesConfig(mixture=RING8, description="8 modes on the unit circle, std 0.01."),
    GaussianMixturesConfig(mixture=GRID25, description="25 modes at {-4,-2,0,2,4}^2, std 0.05."),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    mixture = self.builder_config.mixture
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "point": tfds.features.Tensor(shape=(mixture.dimension,), dtype=np.float32),
          "label": tfds.features.ClassLabel(num_classes=mixture.num_modes),
        }
      ),
      supervised_keys=("point", "label"),
      disable_shuffling=True,  # Written in generation order (draws are i.i.d.).
      homepage="https://github.com/fjxmlzn/PacGAN",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Generated: nothing to download.
    return {split: self._generate_examples(split) for split in SPLIT_SIZES}

  def _generate_examples(self, split):
    points, modes = split_points(self.builder_config.name, split)
    for index, (point, mode) in enumerate(zip(points, modes)):
      yield index, {"point": point, "label": int(mode)}
