"""The two protocols: which settings, seeds, steps, checkpoints and sample counts.

* `standard`: every family (ae, vae, gan, diffusion) and every discovered variant on each
  known-support dataset, `STANDARD_SEEDS` seeds, the budgets of `hallucination_bases.py`,
  measured at 8 checkpoints a doubling apart (1/128 .. 1 of training: the learning curve the
  convergence rule reads, and calibration models whose exact rates vary widely).
* `pacgan`: the PacGAN authors' 2-D protocol (Lin et al. 2018): GAN with pack sizes 1-4 on
  the ring and the grid, 400,000 steps, 10 trials, 2,500 samples from a fixed z set, measured
  every `eval_every` steps (the curve of modes captured and high-quality fraction).
* `quick` (the standard protocol, reduced for CI, about 100 s on 2 cores): two seeds, 100
  steps on the ring and 20 on shapes, measured at 5%, 25% and 100%, 300 samples, latent
  GMMs fitted to 1,000 training codes, and the settings in `QUICK_SETTINGS`.
"""

import dataclasses
import difflib
from typing import Any, Callable, List, Optional, Sequence, Tuple

import ml_collections

from aigc_jax.errors import UnknownNameError
from aigc_jax.hallucination_benchmark import convergence, variants as variants_lib

PROTOCOLS = ("standard", "pacgan")
STANDARD_DATASETS = ("simple_shapes", "gaussian_ring8", "gaussian_grid25")
# Seeds per setting: fewer on shapes, whose convolutional steps cost ~50x a 2-D step on a CPU.
STANDARD_SEEDS = {"gaussian_ring8": 3, "gaussian_grid25": 3, "simple_shapes": 2}
STANDARD_SAMPLES = {"gaussian_ring8": 1_000, "gaussian_grid25": 1_000, "simple_shapes": 1_000}
# Checkpoints of the standard protocol: 8 steps a doubling apart (1/128 .. 1 of the budget),
# the learning curve the convergence rule reads (`convergence.check_convergence`) and the
# calibration's models, whose exact rates vary widely along it. --quick measures 3 (5%, 25%,
# 100%): enough for the rule's one doubling and cheaper in CI.
STANDARD_CHECKPOINTS = 8
QUICK_CHECKPOINT_FRACTIONS = (0.05, 0.25, 1.0)

QUICK_DATASETS = ("gaussian_ring8", "simple_shapes")
QUICK_SEEDS = 2
QUICK_STEPS = {"gaussian_ring8": 100, "gaussian_grid25": 100, "simple_shapes": 20}
QUICK_SAMPLES = 300
QUICK_CLASSIFIER_STEPS = 60
QUICK_LATENT_GMM_CODES = 1_000  # Training codes per latent GMM (EM's cost grows with them).
# Per dataset, the settings of --quick: the AE (reconstruction only), the GAN (discriminator
# filter) and the diffusion model (trajectory-variance filter; its base's 100 sampling steps
# cost a few seconds here) on the ring, DiffAugment's "n/a" row (found by building the
# family), and the VAE (generation, reconstruction and the classifier's estimates) on shapes.
QUICK_SETTINGS = {
  "gaussian_ring8": ("ae", "gan", "diffusion", "gan_diffaug"),
  "simple_shapes": ("vae",),
}

PACGAN_DATASETS = ("gaussian_ring8", "gaussian_grid25")
PACGAN_STEPS = 400_000
PACGAN_TRIALS = 10
PACGAN_PACK_SIZES = (1, 2, 3, 4)
PACGAN_SAMPLES = 2_500
PACGAN_PACKS_PER_STEP = 100
PACGAN_EVAL_EVERY = 10_000


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one benchmark run does."""

  protocol: str
  quick: bool
  settings: Tuple[Any, ...]  # settings.Setting (whose module imports jax).
  num_samples: dict  # dataset -> samples per model.

  @property
  def datasets(self) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(s.dataset for s in self.settings))


def _given_or(value: Optional[int], default: int) -> int:
  """`value` unless it is None: 0 is a value (refused by the CLI), never "the default"."""
  return default if value is None else value


def setting_names(
  protocol: str,
  configs_dir: str,
  *,
  quick: bool = False,
  pack_sizes: Sequence[int] = PACGAN_PACK_SIZES,
) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
  """(datasets, setting names) that `--only` may name in `protocol`, without building them
  (jax-free: the CLI checks `--only` before jax starts)."""
  if protocol == "pacgan":
    datasets = PACGAN_DATASETS[:1] if quick else PACGAN_DATASETS
    sizes = [p for p in pack_sizes if p <= 2] if quick else list(pack_sizes)
    return datasets, tuple("gan" if p == 1 else f"pacgan{p}" for p in sizes)
  names = variants_lib.FAMILIES + tuple(v.name for v in variants_lib.discover_variants(configs_dir))
  return STANDARD_DATASETS, names


def check_only(
  only: Sequence[str], datasets: Sequence[str], names: Sequence[str], protocol: str
) -> None:
  """Raises UnknownNameError naming each `--only` entry that selects nothing, with the valid
  ones (a typo would otherwise run nothing and exit 0)."""
  valid = set(datasets) | set(names) | {f"{d}/{n}" for d in datasets for n in names}
  unknown = [o for o in only if o not in valid]
  if not unknown:
    return
  close = difflib.get_close_matches(unknown[0], sorted(valid), n=1)
  hint = f" (did you mean {close[0]!r}?)" if close else ""
  raise UnknownNameError(
    f"--only names {', '.join(map(repr, unknown))}, not a dataset or setting of the {protocol} "
    f"protocol{hint}; valid: the datasets {', '.join(datasets)}, the settings "
    f"{', '.join(names)}, or <dataset>/<setting> such as {datasets[0]}/{names[0]}."
  )


def _matches(setting, only: Sequence[str]) -> bool:
  return not only or any(o in (setting.dataset, setting.name, setting.key) for o in only)


def standard_plan(
  configs_dir: str,
  get_base: Callable[[str, str], ml_collections.ConfigDict],
  *,
  quick: bool = False,
  steps: Optional[int] = None,
  seeds: Optional[int] = None,
  only: Sequence[str] = (),
) -> Plan:
  """Families and discovered variants on each dataset.

  Args:
    configs_dir: where the variants are discovered.
    get_base: (dataset, family) -> the base config (`hallucination_bases.get_config`).
    steps, seeds: override the budget and the number of seeds of every setting.
    only: keep settings whose dataset, name or "dataset/name" is listed (with `quick`,
      instead of `QUICK_SETTINGS`: the quick budget on the settings named).
  """
  # Imported here: building a setting traces it with jax; this module stays jax-free.
  from aigc_jax.hallucination_benchmark import settings as settings_lib  # pylint: disable=import-outside-toplevel

  variants = variants_lib.discover_variants(configs_dir)
  datasets = QUICK_DATASETS if quick and not only else STANDARD_DATASETS
  out: List[Any] = []
  for dataset in datasets:
    rows = [(family, family, "", {}) for family in variants_lib.FAMILIES]
    rows += [(v.name, v.family, v.path, v.knobs) for v in variants]
    for name, family, path, knobs in rows:
      if quick and not only and name not in QUICK_SETTINGS[dataset]:
        continue
      if only and not any(o in (dataset, name, f"{dataset}/{name}") for o in only):
        continue  # Before make_setting: checking a setting traces its train step.
      num_seeds = _given_or(seeds, QUICK_SEEDS if quick else STANDARD_SEEDS[dataset])
      base = get_base(dataset, family)
      num_steps = _given_or(steps, QUICK_STEPS[dataset] if quick else base.train.num_steps)
      setting = settings_lib.make_setting(
        dataset,
        name,
        family,
        base,
        range(num_seeds),
        num_steps,
        settings_lib.checkpoint_steps(num_steps, QUICK_CHECKPOINT_FRACTIONS)
        if quick
        else convergence.doubling_checkpoints(num_steps, STANDARD_CHECKPOINTS),
        path,
        knobs,
      )
      if quick:
        setting = dataclasses.replace(setting, latent_gmm_codes=QUICK_LATENT_GMM_CODES)
      out.append(setting)
  # Every dataset's count, also those this run leaves out: the tables hold a folder's earlier
  # settings too.
  samples = {d: (QUICK_SAMPLES if quick else STANDARD_SAMPLES[d]) for d in STANDARD_DATASETS}
  return Plan("standard", quick, tuple(out), samples)


def pacgan_plan(
  get_pacgan: Callable[[str, int], ml_collections.ConfigDict],
  *,
  steps: Optional[int] = None,
  trials: Optional[int] = None,
  eval_every: Optional[int] = None,
  pack_sizes: Sequence[int] = PACGAN_PACK_SIZES,
  only: Sequence[str] = (),
  quick: bool = False,
) -> Plan:
  """PacGAN's protocol; `steps`, `trials`, `eval_every` cut the budget (quick: 300 steps,
  2 trials, pack sizes 1 and 2, the ring only).

  Args:
    get_pacgan: (dataset, pack size) -> the authors' config (`hallucination_bases.pacgan_config`).
  """
  from aigc_jax.hallucination_benchmark import settings as settings_lib  # pylint: disable=import-outside-toplevel

  if quick:
    steps, trials = _given_or(steps, 300), _given_or(trials, 2)
    eval_every = _given_or(eval_every, 100)
    pack_sizes = tuple(p for p in pack_sizes if p <= 2)
  num_steps = _given_or(steps, PACGAN_STEPS)
  every = min(_given_or(eval_every, PACGAN_EVAL_EVERY), num_steps)
  checkpoints = tuple(range(every, num_steps + 1, every))
  if checkpoints[-1] != num_steps:
    checkpoints += (num_steps,)
  out = []
  for dataset in PACGAN_DATASETS[:1] if quick else PACGAN_DATASETS:
    for pack_size in pack_sizes:
      knobs = {
        "model.gan.pack_size": int(pack_size),
        "train.batch_size": PACGAN_PACKS_PER_STEP * int(pack_size),
        "train.eval_batch_size": 1_000 * int(pack_size),
      }
      name = "gan" if pack_size == 1 else f"pacgan{pack_size}"
      setting = settings_lib.make_setting(
        dataset,
        name,
        "gan",
        get_pacgan(dataset, int(pack_size)),
        range(_given_or(trials, PACGAN_TRIALS)),
        num_steps,
        checkpoints,
        "",
        knobs,
      )
      if _matches(setting, only):
        out.append(setting)
  samples = {d: (QUICK_SAMPLES if quick else PACGAN_SAMPLES) for d in PACGAN_DATASETS}
  return Plan("pacgan", quick, tuple(out), samples)
