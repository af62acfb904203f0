"""Training one setting over its seeds, measuring every seed at every checkpoint.

All seeds of a setting train together through `training.multi_seed.MultiSeedTrainer` (vmap
over seeds of the family's own train step). Points (MLPs) run every seed in one call with
the steps under `lax.scan`; images (convolutions) on a CPU run one seed per call and one
step per call, which is ~40x faster there (see `multi_seed`); on an accelerator every
setting uses the scanned, vmapped path.

Samples: `num_samples` per seed and checkpoint from one fixed key (the PacGAN protocol's
fixed z set: every seed and checkpoint sees the same latents). Reconstructions: the first
`num_samples` test inputs (AE / VAE). Unconditional AE / VAE are also sampled through
latent GMMs (`aigc_jax.latent_gmm`: `LATENT_GMM_COMPONENTS` components fitted to the training
codes, seed 0), which make the plain AE a generative model and give the calibration models
that hallucinate less than prior sampling does.

A model's own filter score, beside the model-agnostic ones of `measure`: the GAN's
discriminator logit (`discriminator_scores`) and the diffusion model's trajectory variance
over its last `TRAJECTORY_STEPS` reverse steps (`diffusion_samples_and_scores`, Aithal et
al. 2024's filter), both on the final models only.
"""

import dataclasses
import time
from typing import Any, Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import data, latent_gmm
from aigc_jax.evaluation import filtering, sampling
from aigc_jax.hallucination_benchmark import measure
from aigc_jax.hallucination_benchmark.settings import LATENT_GMM_COMPONENTS, Setting
from aigc_jax.models.gan import pack
from aigc_jax.training import diffusion, multi_seed
from aigc_jax.training.family import get_family
from aigc_jax.training.gan import gan_setup

SAMPLE_KEY = 20_240_613  # The fixed z set.
GENERATE_BATCH = 500
TRAJECTORY_STEPS = 10  # Aithal et al.'s: the variance over the last 10 reverse steps.
MIN_EQUAL_CHUNK = 5  # Steps: below it, one chunk per checkpoint interval (`train_setting`).


def latent_gmm_group(num_components: int) -> str:
  """Key of the measurements of a K-component latent GMM's samples (row "<setting>+gmm<K>")."""
  return f"generation_latent_gmm{num_components}"


def discriminator_scores(setting: Setting, state, samples, labels=None) -> np.ndarray:
  """The trained discriminator's logit of each generated sample (higher = more real).

  With packing (m > 1) the discriminator judges packs, so a sample is scored as a pack of m
  copies of itself.
  """
  config = setting.config
  setup = gan_setup(
    config.model, samples.shape[1:], data.get_dataset_spec(config.dataset.name).num_classes
  )
  disc = state.discriminator

  @jax.jit
  def score(batch, batch_labels):
    inputs = pack(jnp.repeat(setup.to_model_space(batch), setup.pack_size, axis=0), setup.pack_size)
    if batch_labels is not None:
      batch_labels = jnp.repeat(batch_labels, setup.pack_size, axis=0)[:: setup.pack_size]
    return disc.apply_fn(disc.variables(), inputs, batch_labels)

  out = [
    np.asarray(
      score(
        jnp.asarray(samples[i : i + GENERATE_BATCH]),
        None if labels is None else jnp.asarray(labels[i : i + GENERATE_BATCH]),
      )
    )
    for i in range(0, len(samples), GENERATE_BATCH)
  ]
  return np.concatenate(out).astype(np.float64)


_DIFFUSION_SAMPLERS: Dict[str, Callable[..., Any]] = {}  # Setting config (JSON) -> sampler.


def diffusion_samples_and_scores(setting: Setting, state, num: int, key, labels=None) -> tuple:
  """A diffusion model's samples and their trajectory-variance filter scores.

  Batched as `sampling.generate(family, state, num, key, GENERATE_BATCH)` batches (batch i
  from `fold_in(key, i)`, the last batch cut), through the family's sampler kept with the
  predicted clean samples of the last `TRAJECTORY_STEPS` reverse steps (fewer when the
  sampler takes fewer steps): the samples are `sampling.generate`'s up to float32 rounding
  (a differently compiled program; within 1e-5 on the ring, tested), drawn once for both.

  Args:
    labels: `[num]` int32 classes of a conditional model (None: unconditional); the last
      batch's are repeated to fill it, as `sampling.generate` does.

  Returns:
    (samples [num, *sample_shape] float32, scores [num] float64: minus the variance over
    those steps, `filtering.trajectory_variance_score`; higher = keep).
  """
  model = setting.config.model
  config_json = setting.config_json()
  if config_json not in _DIFFUSION_SAMPLERS:  # Compiled once per setting, not per model.
    spec = data.get_dataset_spec(setting.config.dataset.name)
    _DIFFUSION_SAMPLERS[config_json] = diffusion.make_sampler(
      model, spec.sample_shape, spec.num_classes
    )
  sampler = _DIFFUSION_SAMPLERS[config_json]
  keep_last = min(TRAJECTORY_STEPS, int(model.diffusion.sampling_steps))
  samples, scores = [], []
  for index in range(-(-num // GENERATE_BATCH)):
    batch_labels = None
    if labels is not None:
      batch_labels = np.resize(
        labels[index * GENERATE_BATCH : (index + 1) * GENERATE_BATCH], GENERATE_BATCH
      )
    batch, x0_hats = sampler(
      state, jax.random.fold_in(key, index), GENERATE_BATCH, keep_last, batch_labels
    )
    samples.append(np.asarray(batch))
    scores.append(filtering.trajectory_variance_score(x0_hats))
  return np.concatenate(samples)[:num], np.concatenate(scores)[:num]


def uses_latent_gmm(family) -> bool:
  """Unconditional families with an encoder are also sampled through a latent GMM."""
  return family.encode is not None and not family.conditional


@dataclasses.dataclass(frozen=True)
class FinalSamples:
  """Seed 0's samples at the last checkpoint, for the figures.

  Attributes:
    samples: `[N, *sample_shape]` float32, sanitized (`measure.sanitize`).
    valid: `[N]` bool, inside the known support.
  """

  samples: np.ndarray
  valid: np.ndarray


@dataclasses.dataclass(frozen=True)
class StateMeasurement:
  """Every measurement of one trained model (one seed at one checkpoint).

  Attributes:
    groups: the JSON record: {"generation", latent_gmm_group(K), "reconstruction": ...},
      each group present where it applies.
    samples: {generation group: FinalSamples}, filled only when the samples are kept.
  """

  groups: Dict[str, Any]
  samples: Dict[str, FinalSamples]


@dataclasses.dataclass(frozen=True)
class SettingResult:
  """One trained setting, measured.

  Attributes:
    checkpoints: {step: [per-seed `StateMeasurement.groups`]}.
    seconds: training wall time.
    final_samples: {generation group: seed 0's FinalSamples at the last checkpoint}.
  """

  checkpoints: Dict[int, List[Dict[str, Any]]]
  seconds: float
  final_samples: Dict[str, FinalSamples]

  def record(self) -> Dict[str, Any]:
    """The JSON part saved in the setting's file."""
    return {"checkpoints": self.checkpoints, "seconds": self.seconds}


def measure_state(
  setting: Setting,
  family,
  state,
  setup: measure.DatasetSetup,
  with_filtering: bool,
  keep_samples: bool,
) -> StateMeasurement:
  """Every measurement of one trained model (one seed at one checkpoint)."""
  groups: Dict[str, Any] = {}
  kept: Dict[str, FinalSamples] = {}
  spec = setup.reference.spec

  def measure_samples(group: str, samples, extra) -> None:
    measured = measure.measure_generation(setup, samples, extra, with_filtering)
    groups[group] = measured.record()
    if keep_samples:
      kept[group] = FinalSamples(measure.sanitize(samples, spec.kind), measured.valid)

  num = setup.num_samples
  if family.generate is not None:
    # Conditional models are asked for classes in turn (uniform, as both datasets' classes).
    labels = (np.arange(num, dtype=np.int32) % spec.num_classes) if family.conditional else None
    extra = {}
    if setting.family == "diffusion":
      # One pass gives the samples and their own filter scores (at every checkpoint, so that
      # every diffusion sample set of the benchmark comes from one compiled sampler).
      samples, scores = diffusion_samples_and_scores(
        setting, state, num, jax.random.PRNGKey(SAMPLE_KEY), labels
      )
      if with_filtering:
        extra["trajectory_variance"] = scores
    else:
      samples = sampling.generate(
        family, state, num, jax.random.PRNGKey(SAMPLE_KEY), GENERATE_BATCH, labels
      )
    if setting.family == "gan" and with_filtering:
      extra["discriminator"] = discriminator_scores(
        setting, state, measure.sanitize(samples, spec.kind), labels
      )
    measure_samples("generation", samples, extra)
  for num_components in LATENT_GMM_COMPONENTS if uses_latent_gmm(family) else ():
    samples = latent_gmm.generate(
      family,
      state,
      setup.dataset.train[0][: setting.latent_gmm_codes],
      num,
      num_components=num_components,
    )
    measure_samples(latent_gmm_group(num_components), samples, {})
  if family.reconstruct is not None:
    inputs, labels = setup.reference.held_out, setup.reference.held_out_labels
    groups["reconstruction"] = measure.measure_reconstruction(
      setup,
      inputs,
      labels,
      sampling.reconstruct(family, state, inputs, labels, jax.random.PRNGKey(0), GENERATE_BATCH),
    )
  return StateMeasurement(groups, kept)


def train_setting(
  setting: Setting,
  setup: measure.DatasetSetup,
  *,
  seeds_per_call: Optional[int] = None,
  scan_steps: Optional[bool] = None,
  progress: Callable[[str], None] = print,
) -> SettingResult:
  """Trains every seed of `setting` and measures each at each checkpoint."""
  dataset = setup.dataset
  train_x, train_y = dataset.train
  family = get_family(setting.config, dataset.spec.sample_shape)
  images = dataset.spec.kind == "image"
  on_cpu = jax.default_backend() == "cpu"
  if seeds_per_call is None:
    seeds_per_call = 1 if (images and on_cpu) else None
  if scan_steps is None:
    scan_steps = not (images and on_cpu)
  trainer = multi_seed.MultiSeedTrainer(
    family,
    train_x,
    train_y,
    setting.config.train.batch_size,
    setting.seeds,
    seeds_per_call=seeds_per_call,
    scan_steps=scan_steps,
  )
  states = trainer.init()
  done, seconds = 0, 0.0
  checkpoints: Dict[int, List[Dict[str, Any]]] = {}
  final_samples: Dict[str, FinalSamples] = {}
  # Equal chunks (one compilation) up to each checkpoint when the checkpoints share a divisor
  # of MIN_EQUAL_CHUNK steps or more; else one chunk per interval (a compilation per distinct
  # length: 8 for the standard protocol's doubling checkpoints, whose divisor is often 1).
  # `run(a)` then `run(b)` equals `run(a + b)`, so the chunking never changes the numbers.
  chunk = int(np.gcd.reduce(np.diff((0,) + setting.checkpoints)))
  for step in setting.checkpoints:
    start = time.perf_counter()
    while done < step:
      length = chunk if chunk >= MIN_EQUAL_CHUNK else step - done
      states, _ = trainer.run(states, length)
      done += length
    jax.block_until_ready(states)
    seconds += time.perf_counter() - start
    final = step == setting.checkpoints[-1]
    per_seed = []
    for index in range(len(setting.seeds)):
      measured = measure_state(
        setting,
        family,
        multi_seed.select_seed(states, index),
        setup,
        with_filtering=final,
        keep_samples=final and index == 0,
      )
      final_samples.update(measured.samples)
      per_seed.append(measured.groups)
    checkpoints[step] = per_seed
    progress(f"  {setting.key}: step {step} measured ({seconds:.0f} s of training)")
  return SettingResult(checkpoints, seconds, final_samples)
