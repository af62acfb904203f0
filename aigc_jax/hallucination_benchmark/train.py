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
"""
import time
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import data, latent_gmm
from aigc_jax.hallucination_benchmark import measure
from aigc_jax.hallucination_benchmark.settings import LATENT_GMM_COMPONENTS, Setting
from aigc_jax.models.gan import pack
from aigc_jax.training import multi_seed
from aigc_jax.training.family import get_family
from aigc_jax.training.gan import gan_setup

SAMPLE_KEY = 20_240_613  # The fixed z set.
GENERATE_BATCH = 500


def latent_gmm_group(num_components: int) -> str:
  """Key of the measurements of a K-component latent GMM's samples (row "<setting>+gmm<K>")."""
  return f"generation_latent_gmm{num_components}"


def discriminator_scores(setting: Setting, state, samples, labels=None) -> np.ndarray:
  """The trained discriminator's logit of each generated sample (higher = more real).

  With packing (m > 1) the discriminator judges packs, so a sample is scored as a pack of m
  copies of itself.
  """
  config = setting.config
  setup = gan_setup(config.model, samples.shape[1:],
                    data.get_dataset_spec(config.dataset.name).num_classes)
  disc = state.discriminator

  @jax.jit
  def score(batch, batch_labels):
    inputs = pack(jnp.repeat(setup.to_model_space(batch), setup.pack_size, axis=0),
                  setup.pack_size)
    if batch_labels is not None:
      batch_labels = jnp.repeat(batch_labels, setup.pack_size, axis=0)[::setup.pack_size]
    return disc.apply_fn(disc.variables(), inputs, batch_labels)

  out = [np.asarray(score(jnp.asarray(samples[i:i + GENERATE_BATCH]),
                          None if labels is None else jnp.asarray(labels[i:i + GENERATE_BATCH])))
         for i in range(0, len(samples), GENERATE_BATCH)]
  return np.concatenate(out).astype(np.float64)


def _generate(family, state, num: int, labels):
  key = jax.random.PRNGKey(SAMPLE_KEY)
  parts = []
  for index, start in enumerate(range(0, num, GENERATE_BATCH)):
    size = min(GENERATE_BATCH, num - start)
    batch_labels = None if labels is None else jnp.asarray(labels[start:start + size])
    parts.append(np.asarray(family.generate(state, jax.random.fold_in(key, index), size,
                                            batch_labels)))
  return np.concatenate(parts)


def _reconstruct(family, state, inputs, labels):
  parts = []
  for start in range(0, len(inputs), GENERATE_BATCH):
    batch_labels = (jnp.asarray(labels[start:start + GENERATE_BATCH])
                    if family.conditional else None)
    parts.append(np.asarray(family.reconstruct(state, jnp.asarray(
        inputs[start:start + GENERATE_BATCH]), jax.random.PRNGKey(0), batch_labels)))
  return np.concatenate(parts)


def uses_latent_gmm(family) -> bool:
  """Unconditional families with an encoder are also sampled through a latent GMM."""
  return family.encode is not None and not family.conditional


def _measure_samples(out, group: str, prefix: str, reference: measure.Reference, samples,
                     extra, with_filtering: bool, keep_samples: bool) -> None:
  """Puts the measurements of generated `samples` in `out[group]` and, with `keep_samples`,
  the samples and their validity in `out[prefix + "samples"]`, `out[prefix + "valid"]`."""
  out[group] = measure.measure_generation(reference, samples, extra, with_filtering)
  valid = out[group].pop("valid")
  if keep_samples:
    out[f"{prefix}samples"] = measure.sanitize(samples, reference.dataset.spec.kind)
    out[f"{prefix}valid"] = valid


def measure_state(setting: Setting, family, state, reference: measure.Reference,
                  with_filtering: bool, keep_samples: bool) -> Dict[str, Any]:
  """Every measurement of one trained model (one seed at one checkpoint)."""
  out: Dict[str, Any] = {}
  num = reference.num_samples
  if family.generate is not None:
    spec = reference.dataset.spec
    # Conditional models are asked for classes in turn (uniform, as both datasets' classes).
    labels = (np.arange(num, dtype=np.int32) % spec.num_classes) if family.conditional else None
    samples = _generate(family, state, num, labels)
    extra = {}
    if setting.family == "gan" and with_filtering:
      extra["discriminator"] = discriminator_scores(
          setting, state, measure.sanitize(samples, spec.kind), labels)
    _measure_samples(out, "generation", "", reference, samples, extra, with_filtering,
                     keep_samples)
  for num_components in (LATENT_GMM_COMPONENTS if uses_latent_gmm(family) else ()):
    group = latent_gmm_group(num_components)
    samples = latent_gmm.generate(family, state,
                                  reference.dataset.train[0][:setting.latent_gmm_codes], num,
                                  num_components=num_components)
    _measure_samples(out, group, f"{group}_", reference, samples, {}, with_filtering,
                     keep_samples)
  if family.reconstruct is not None:
    inputs, labels = (a[:num] for a in reference.dataset.test)
    out["reconstruction"] = measure.measure_reconstruction(
        reference, inputs, labels, _reconstruct(family, state, inputs, labels))
  return out


def train_setting(setting: Setting, reference: measure.Reference, *,
                  seeds_per_call: Optional[int] = None, scan_steps: Optional[bool] = None,
                  progress: Callable[[str], None] = print) -> Dict[str, Any]:
  """Trains every seed of `setting` and measures each at each checkpoint.

  Returns:
    {"checkpoints": {step: [per-seed measurement]}, "seconds": training wall time,
     "final_samples": seed 0's samples at the last checkpoint (generating families),
     "final_valid": their validity, and the same of each latent GMM's samples,
     "final_generation_latent_gmm<K>_samples" / "..._valid" (unconditional AE / VAE)}.
  """
  dataset = reference.dataset
  train_x, train_y = dataset.train
  family = get_family(setting.config, dataset.spec.sample_shape)
  images = dataset.spec.kind == "image"
  on_cpu = jax.default_backend() == "cpu"
  if seeds_per_call is None:
    seeds_per_call = 1 if (images and on_cpu) else None
  if scan_steps is None:
    scan_steps = not (images and on_cpu)
  trainer = multi_seed.MultiSeedTrainer(family, train_x, train_y,
                                        setting.config.train.batch_size, setting.seeds,
                                        seeds_per_call=seeds_per_call, scan_steps=scan_steps)
  states = trainer.init()
  done, seconds = 0, 0.0
  results: Dict[str, Any] = {"checkpoints": {}}
  # Equal chunks (one compilation) up to each checkpoint.
  chunk = int(np.gcd.reduce(np.diff((0,) + setting.checkpoints)))
  for step in setting.checkpoints:
    start = time.perf_counter()
    while done < step:
      states, _ = trainer.run(states, chunk)
      done += chunk
    jax.block_until_ready(states)
    seconds += time.perf_counter() - start
    final = step == setting.checkpoints[-1]
    per_seed = []
    for index in range(len(setting.seeds)):
      measured = measure_state(setting, family, multi_seed.select_seed(states, index),
                               reference, with_filtering=final,
                               keep_samples=final and index == 0)
      for prefix in ("",) + tuple(f"{latent_gmm_group(k)}_" for k in LATENT_GMM_COMPONENTS):
        if f"{prefix}samples" in measured:
          results[f"final_{prefix}samples"] = measured.pop(f"{prefix}samples")
          results[f"final_{prefix}valid"] = measured.pop(f"{prefix}valid")
      per_seed.append(measured)
    results["checkpoints"][step] = per_seed
    progress(f"  {setting.key}: step {step} measured ({seconds:.0f} s of training)")
  results["seconds"] = seconds
  return results
