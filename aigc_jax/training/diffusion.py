"""The diffusion family: DDPM (Ho et al. 2020, "Denoising Diffusion Probabilistic Models")
with epsilon prediction, ancestral DDPM and DDIM (Song et al. 2021, "Denoising Diffusion
Implicit Models", eta = 0) sampling, and an EMA of the weights for sampling.

Timesteps t = 0 .. T-1 (T = `model.diffusion.num_timesteps`), betas beta_t from the schedule,
alpha_t = 1 - beta_t, abar_t = prod_{s <= t} alpha_s and abar_{-1} = 1:
- forward: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eps ~ N(0, I);
- loss (Ho's "simple" loss), per example: mean over features of |eps_theta(x_t, t) - eps|^2,
  t uniform in 0 .. T-1; example i of the global batch draws (t_i, eps_i) from
  `fold_in(fold_in(train_key, step), i)` (`training.noise`): the same on 1 device or 8;
- predicted clean sample: x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t);
- reverse step t -> s (s the previous sampling timestep, abar_s = 1 past the first), with
  beta' = 1 - abar_t / abar_s (= beta_t when s = t - 1):
  DDPM: x_s = mean + sqrt(var) z, z ~ N(0, I) (none on the last step), posterior mean
  mean = sqrt(abar_s) beta' / (1 - abar_t) x0_hat + sqrt(1 - beta') (1 - abar_s) / (1 - abar_t)
  x_t, var = beta' ("large") or (1 - abar_s) / (1 - abar_t) beta' ("small", the posterior's);
  DDIM: x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) eps_theta.
  Fewer sampling steps than T use timesteps evenly spaced over 0 .. T-1 (always T-1 and 0),
  the respacing of Nichol & Dhariwal 2021.
Schedules: linear betas from `beta_start` to `beta_end` (Ho et al. 2020: 1e-4 to 0.02); cosine
(Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models"):
abar(t) = f(t) / f(0), f(t) = cos((t / T + s) / (1 + s) pi / 2)^2, beta_t = min(1 - abar(t + 1)
/ abar(t), 0.999).

Denoisers (`model.diffusion.denoiser`): "mlp", the toy MLP of Aithal et al. 2024
(`models.denoisers.TemporalMLP`), for points; "unet", a small UNet (`models.unet.UNet`), for
images.

Class-conditional sampling by classifier-free guidance (Ho & Salimans 2022, "Classifier-Free
Diffusion Guidance"), with `model.conditioning = "embedding"`: the denoiser adds a learned
embedding of the label (K + 1 entries for K classes, the last, label K, = "no label") to its
time embedding. In training each example's label is replaced by "no label" with probability
p = `model.diffusion.label_dropout`, drawn from `fold_in(fold_in(step_key, i), 1)` for
example i of the global batch (its (t, eps) key `fold_in(step_key, i)` folded once more), so
the same examples drop on 1 device or 8. Sampling with guidance scale w =
`model.diffusion.guidance_scale` uses
  eps = (1 + w) eps_theta(x_t, t, c) - w eps_theta(x_t, t, no label),
Ho & Salimans' eq. 6 convention: w = 0 is the plain conditional model (one network pass),
w > 0 pushes samples towards their class (two passes, batched as one of 2N).

Data range: `model.output_range = "unit"` (images in [0, 1]) diffuses 2x - 1, in [-1, 1], and
maps samples back (clipped to [0, 1]); "unbounded" (points) diffuses the data as it is.
`model.diffusion.clip_denoised` clips x0_hat to [-1, 1] while sampling ("unit" only).
"""

from typing import Any, Callable, NamedTuple, Tuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.models.denoisers import TemporalMLP
from aigc_jax.models.unet import UNet
from aigc_jax.registry import unknown_name_message
from aigc_jax.training import noise, steps
from aigc_jax.training.family import FAMILIES, Family
from aigc_jax.training.state import TrainState

OUTPUT_RANGES = ("unit", "unbounded")
DENOISERS = ("mlp", "unet")
# none, or embedding: a label embedding added to the time embedding, classifier-free guidance.
CONDITIONINGS = ("none", "embedding")
LABEL_DROPOUT_FOLD = 1  # Example i's dropout key: its (t, eps) key folded with this.
COSINE_MAX_BETA = 0.999  # Nichol & Dhariwal's clip, against a singular last step.

# (x_t [N, ...], t [N] or [1] int32) -> eps [N, ...]; a sampler passes t [1], the one
# timestep of the whole batch.
EpsFn = Callable[[jax.Array, jax.Array], jax.Array]
# (x_t [N, ...], t [N] or [1] int32, labels [N] int32) -> eps [N, ...]: a conditional denoiser.
ConditionalEpsFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


class DiffusionState(TrainState):
  """The denoiser's train state plus `ema_params`, the EMA of its params that sampling uses
  (ema = decay * ema + (1 - decay) * params after each step; decay 0: the params)."""

  ema_params: Any = flax.struct.field(default_factory=dict)


class NoiseSchedule(NamedTuple):
  """`betas [T]` and `alpha_bars [T]` (abar_t = prod_{s <= t} (1 - beta_s)), float64."""

  betas: np.ndarray
  alpha_bars: np.ndarray


def linear_betas(num_timesteps: int, beta_start: float, beta_end: float) -> np.ndarray:
  """Ho et al.'s betas `[T]`, linear from beta_start (t = 0) to beta_end (t = T-1)."""
  return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, offset: float) -> np.ndarray:
  """Nichol & Dhariwal's betas `[T]` of abar(t) = f(t) / f(0), f(t) = cos((t/T + s)/(1 + s)
  pi/2)^2 with s = offset, each clipped to COSINE_MAX_BETA."""
  steps_ = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
  f = np.cos((steps_ + offset) / (1 + offset) * np.pi / 2) ** 2
  return np.minimum(1 - f[1:] / f[:-1], COSINE_MAX_BETA)


def make_schedule(diffusion_cfg: ml_collections.ConfigDict) -> NoiseSchedule:
  """The schedule of a `config.model.diffusion` section."""
  if diffusion_cfg.schedule == "linear":
    betas = linear_betas(
      diffusion_cfg.num_timesteps, diffusion_cfg.beta_start, diffusion_cfg.beta_end
    )
  else:
    betas = cosine_betas(diffusion_cfg.num_timesteps, diffusion_cfg.cosine_offset)
  return NoiseSchedule(betas=betas, alpha_bars=np.cumprod(1.0 - betas))


def sampling_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
  """The `num_steps` timesteps `[S]` int32 a sampler visits, increasing: evenly spaced over
  0 .. T-1, both ends included (all T when num_steps = T)."""
  if num_steps == 1:
    return np.array([num_timesteps - 1], np.int32)
  return np.round(np.linspace(0, num_timesteps - 1, num_steps)).astype(np.int32)


def noisy_sample(x0, eps, alpha_bar):
  """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps; `alpha_bar` broadcasts against x0 `[N, ...]`."""
  return jnp.sqrt(alpha_bar) * x0 + jnp.sqrt(1.0 - alpha_bar) * eps


def predicted_clean(x_t, eps, alpha_bar):
  """x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar), the inverse of `noisy_sample`."""
  return (x_t - jnp.sqrt(1.0 - alpha_bar) * eps) / jnp.sqrt(alpha_bar)


def posterior_mean(x0, x_t, alpha_bar, alpha_bar_prev):
  """Mean of q(x_s | x_t, x0) for the step t -> s with abar_t, abar_s (module docstring)."""
  beta = 1.0 - alpha_bar / alpha_bar_prev
  return (
    jnp.sqrt(alpha_bar_prev) * beta / (1.0 - alpha_bar) * x0
    + jnp.sqrt(1.0 - beta) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * x_t
  )


def posterior_variance(alpha_bar, alpha_bar_prev):
  """Variance of q(x_s | x_t, x0): (1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)."""
  return (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev)


class StepCoefficients(NamedTuple):
  """The coefficients of one reverse step t -> s, computed in float64 on the host.

  In float32 on the device, alpha-bar underflows: under Aithal et al.'s schedule (T = 1000,
  betas to 0.2) abar_999 ~ 4e-44 is subnormal, XLA:CPU flushes it to zero, and
  x0 = x_t / sqrt(abar) - ... becomes inf and every sample NaN. Each coefficient below is
  a normal float32 number (1 / sqrt(abar) ~ 2e21; sqrt(abar_s) beta / (1 - abar_t) ~ 7e-22).
  """

  recip_sqrt_alpha_bar: Any  # x0 = recip_sqrt_alpha_bar x_t - sqrt_recip_minus_one eps
  sqrt_recip_minus_one: Any
  sqrt_alpha_bar: Any  # eps of a clipped x0: (x_t - sqrt_alpha_bar x0) / sqrt(1 - abar_t)
  sqrt_one_minus_alpha_bar: Any
  mean_x0: Any  # The posterior mean: mean_x0 x0 + mean_xt x_t.
  mean_xt: Any
  sigma: Any  # The DDPM noise's standard deviation (fixed large or small).
  sqrt_alpha_bar_prev: Any  # DDIM: sqrt(abar_s) x0 + sqrt(1 - abar_s) eps.
  sqrt_one_minus_alpha_bar_prev: Any


def step_coefficients(alpha_bar, alpha_bar_prev, variance: str) -> StepCoefficients:
  """The coefficients (float64 numpy, the shape of the inputs) of the steps abar_t -> abar_s."""
  a = np.asarray(alpha_bar, np.float64)
  a_prev = np.asarray(alpha_bar_prev, np.float64)
  beta = 1.0 - a / a_prev
  var = beta if variance == "large" else (1.0 - a_prev) / (1.0 - a) * beta
  return StepCoefficients(
    recip_sqrt_alpha_bar=1.0 / np.sqrt(a),
    sqrt_recip_minus_one=np.sqrt(1.0 / a - 1.0),
    sqrt_alpha_bar=np.sqrt(a),
    sqrt_one_minus_alpha_bar=np.sqrt(1.0 - a),
    mean_x0=np.sqrt(a_prev) * beta / (1.0 - a),
    mean_xt=np.sqrt(1.0 - beta) * (1.0 - a_prev) / (1.0 - a),
    sigma=np.sqrt(var),
    sqrt_alpha_bar_prev=np.sqrt(a_prev),
    sqrt_one_minus_alpha_bar_prev=np.sqrt(1.0 - a_prev),
  )


def apply_reverse_step(
  c: StepCoefficients, eps, x_t, z, *, sampler: str, clip: bool
) -> Tuple[jax.Array, jax.Array]:
  """One reverse step from the predicted noise `eps` of `x_t` (both `[N, ...]`) with the
  step's coefficients `c`; `z` the DDPM noise (zeros on the last step). Returns (x_s, x0_hat)."""
  x0 = c.recip_sqrt_alpha_bar * x_t - c.sqrt_recip_minus_one * eps
  if clip:
    x0 = jnp.clip(x0, -1.0, 1.0)
    eps = (x_t - c.sqrt_alpha_bar * x0) / c.sqrt_one_minus_alpha_bar
  if sampler == "ddim":
    return c.sqrt_alpha_bar_prev * x0 + c.sqrt_one_minus_alpha_bar_prev * eps, x0
  return c.mean_x0 * x0 + c.mean_xt * x_t + c.sigma * z, x0


def reverse_step(
  eps, x_t, alpha_bar, alpha_bar_prev, z, *, sampler: str, variance: str, clip: bool
) -> Tuple[jax.Array, jax.Array]:
  """`apply_reverse_step` for host values abar_t, abar_s (numbers, not traced)."""
  c = step_coefficients(alpha_bar, alpha_bar_prev, variance)
  c = StepCoefficients(*(jnp.asarray(v, jnp.float32) for v in c))
  return apply_reverse_step(c, eps, x_t, z, sampler=sampler, clip=clip)


def sample(
  eps_fn: EpsFn,
  schedule: NoiseSchedule,
  x_start: jax.Array,
  key: jax.Array,
  *,
  num_steps: int,
  sampler: str,
  variance: str,
  clip: bool = False,
  keep_last: int = 0,
) -> Tuple[jax.Array, jax.Array]:
  """Runs the reverse process from `x_start` (x_{T-1} ~ N(0, I), `[N, ...]`) over
  `sampling_timesteps(T, num_steps)`, compiled as `lax.scan`s.

  Step j (j = 0 first, at t = T-1) draws its DDPM noise from `fold_in(key, j)`.
  Returns (x0 `[N, ...]`, x0_hats `[keep_last, N, ...]`: the predicted clean samples of the
  last `keep_last` steps, oldest first; the last is the step whose output is x0).
  """
  if not 0 <= keep_last <= num_steps:
    raise ValueError(f"keep_last must be in [0, num_steps = {num_steps}], got {keep_last}")
  timesteps = sampling_timesteps(len(schedule.betas), num_steps)[::-1]
  alpha_bars = schedule.alpha_bars[timesteps]
  alpha_bars_prev = np.append(alpha_bars[1:], 1.0)
  last = np.arange(len(timesteps)) == len(timesteps) - 1
  coefficients = step_coefficients(alpha_bars, alpha_bars_prev, variance)
  xs = (
    jnp.arange(len(timesteps), dtype=jnp.int32),
    jnp.asarray(timesteps, jnp.int32),
    StepCoefficients(*(jnp.asarray(v, jnp.float32) for v in coefficients)),
    jnp.asarray(last),
  )

  def body(x, step):
    j, t, c, is_last = step
    eps = eps_fn(x, t[None])  # One timestep for the batch: its embedding is computed once.
    z = jnp.where(is_last, 0.0, jax.random.normal(jax.random.fold_in(key, j), x.shape))
    return apply_reverse_step(c, eps, x, z, sampler=sampler, clip=clip)

  split = len(timesteps) - keep_last
  x, _ = jax.lax.scan(
    lambda x, s: (body(x, s)[0], None), x_start, jax.tree.map(lambda a: a[:split], xs)
  )
  x, x0_hats = jax.lax.scan(body, x, jax.tree.map(lambda a: a[split:], xs))
  return x, x0_hats


def timesteps_and_noise(key, indices, num_timesteps: int, shape) -> Tuple[jax.Array, jax.Array]:
  """Per example j: t `[N]` int32 uniform in 0 .. T-1 and eps `[N, *shape]` N(0, I), both from
  `fold_in(key, indices[j])` (split in two: t, then eps)."""

  def draw(i):
    t_key, eps_key = jax.random.split(jax.random.fold_in(key, i))
    return (
      jax.random.randint(t_key, (), 0, num_timesteps, jnp.int32),
      jax.random.normal(eps_key, shape),
    )

  return jax.vmap(draw)(indices)


def dropped_labels(key, indices, labels, num_classes: int, probability: float) -> jax.Array:
  """`labels [N]` int32 with each replaced by the "no label" index `num_classes` with
  probability `probability`; example j decides by a uniform draw from
  `fold_in(fold_in(key, indices[j]), LABEL_DROPOUT_FOLD)` (module docstring)."""

  def draw(i):
    return jax.random.uniform(
      jax.random.fold_in(jax.random.fold_in(key, i), LABEL_DROPOUT_FOLD), ()
    )

  drop = jax.vmap(draw)(indices) < probability
  return jnp.where(drop, num_classes, labels).astype(jnp.int32)


def guided_eps(eps_fn: ConditionalEpsFn, labels, null_label: int, guidance_scale: float) -> EpsFn:
  """The classifier-free guided noise prediction of class `labels [N]` int32:
  (1 + w) eps_fn(x, t, labels) - w eps_fn(x, t, null_label), w = `guidance_scale` (w = 0:
  eps_fn(x, t, labels) alone). Both passes run as one batch of 2N."""
  if guidance_scale == 0:
    return lambda x, t: eps_fn(x, t, labels)
  both_labels = jnp.concatenate([labels, jnp.full_like(labels, null_label)])

  def eps(x, t):
    both_t = t if t.shape[0] == 1 else jnp.concatenate([t, t])
    conditional, unconditional = jnp.split(eps_fn(jnp.concatenate([x, x]), both_t, both_labels), 2)
    return (1.0 + guidance_scale) * conditional - guidance_scale * unconditional

  return eps


def denoising_loss(eps_fn: EpsFn, x0, t, eps, alpha_bars) -> jax.Array:
  """Ho's simple loss per example `[N]`: mean over features of |eps_fn(x_t, t) - eps|^2, with
  x_t = `noisy_sample(x0, eps, alpha_bars[t])`; x0, eps `[N, ...]`, t `[N]` int32."""
  alpha_bar = alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1))
  error = eps_fn(noisy_sample(x0, eps, alpha_bar), t) - eps
  return jnp.mean(jnp.square(error).reshape(error.shape[0], -1), axis=-1)


def build_denoiser(
  diffusion_cfg: ml_collections.ConfigDict, compute_dtype: str, num_classes: int = 0
):
  """The denoiser named by `diffusion_cfg.denoiser` ("mlp": the authors' TemporalMLP;
  "unet": the image UNet), class-conditional on `num_classes` classes when > 0."""
  if diffusion_cfg.denoiser not in DENOISERS:
    raise UnknownNameError(unknown_name_message("denoiser", diffusion_cfg.denoiser, DENOISERS))
  if diffusion_cfg.denoiser == "unet":
    return UNet(
      channels=diffusion_cfg.channels,
      channel_multipliers=tuple(diffusion_cfg.channel_multipliers),
      res_blocks=diffusion_cfg.res_blocks_per_level,
      attention=diffusion_cfg.attention,
      groups=diffusion_cfg.norm_groups,
      num_classes=num_classes,
      dtype=compute_dtype,
    )
  return TemporalMLP(
    width=diffusion_cfg.width,
    num_layers=diffusion_cfg.num_temporal_layers,
    shared=diffusion_cfg.shared_temporal_layers,
    num_classes=num_classes,
    dtype=compute_dtype,
    num_timesteps=diffusion_cfg.num_timesteps,
  )


def conditional_classes(model_cfg: ml_collections.ConfigDict, num_classes: int) -> int:
  """The classes the denoiser is conditioned on: the dataset's `num_classes` when
  `model.conditioning = "embedding"`, else 0."""
  return num_classes if model_cfg.conditioning == "embedding" else 0


def _check_config(model_cfg: ml_collections.ConfigDict, sample_shape, num_classes: int) -> None:
  """One-line errors for settings that cannot work together (ranges and the schedule, variance
  and sampler names are `config_rules.RULES`')."""
  cfg = model_cfg.diffusion
  if model_cfg.output_range not in OUTPUT_RANGES:
    raise UnknownNameError(
      unknown_name_message("output range", model_cfg.output_range, OUTPUT_RANGES)
    )
  if model_cfg.conditioning in ("concat", "projection"):
    raise ConfigError(
      f"model.conditioning={model_cfg.conditioning!r} is the VAE's or GAN's; the diffusion "
      "family conditions by a label embedding: use 'embedding' (classifier-free guidance)."
    )
  if model_cfg.conditioning not in CONDITIONINGS:
    raise UnknownNameError(
      unknown_name_message("conditioning", model_cfg.conditioning, CONDITIONINGS)
    )
  if model_cfg.conditioning == "embedding" and num_classes < 1:
    raise ConfigError(
      "model.conditioning='embedding' needs a dataset with class labels; this one has none: "
      "set model.conditioning='none'."
    )
  if cfg.denoiser == "unet":
    _check_unet(cfg, sample_shape)
  if cfg.schedule == "linear" and not cfg.beta_start <= cfg.beta_end:
    raise ConfigError(
      f"model.diffusion.beta_start ({cfg.beta_start}) must be <= beta_end ({cfg.beta_end})."
    )
  if cfg.sampling_steps > cfg.num_timesteps:
    raise ConfigError(
      f"model.diffusion.sampling_steps ({cfg.sampling_steps}) must be <= num_timesteps "
      f"({cfg.num_timesteps})."
    )
  if cfg.clip_denoised and model_cfg.output_range != "unit":
    raise ConfigError(
      "model.diffusion.clip_denoised clips to the [-1, 1] of images; set it False with "
      "model.output_range='unbounded'."
    )


def _check_unet(cfg: ml_collections.ConfigDict, sample_shape) -> None:
  """One-line errors for a UNet that cannot take these samples or these group norms."""
  if len(sample_shape) != 3:
    raise ConfigError(
      f"model.diffusion.denoiser='unet' takes images [H, W, C], but the samples have shape "
      f"{tuple(sample_shape)}; use model.diffusion.denoiser='mlp'."
    )
  num_levels = len(cfg.channel_multipliers)
  factor = 2 ** (num_levels - 1)
  if sample_shape[0] % factor or sample_shape[1] % factor:
    raise ConfigError(
      f"model.diffusion.channel_multipliers has {num_levels} levels, which halve the "
      f"{sample_shape[0]}x{sample_shape[1]} images {num_levels - 1} times: H and W must be "
      f"divisible by {factor}; use fewer levels."
    )
  for multiplier in cfg.channel_multipliers:
    if (cfg.channels * multiplier) % cfg.norm_groups:
      raise ConfigError(
        f"model.diffusion.channels * multiplier = {cfg.channels * multiplier} is not "
        f"divisible by model.diffusion.norm_groups ({cfg.norm_groups}); change either."
      )


def make_sampler(
  model: ml_collections.ConfigDict, sample_shape, num_classes: int = 0
) -> Callable[..., Any]:
  """`(state, key, num, keep_last=0, labels=None) -> (samples [num, *sample_shape], x0_hats
  [keep_last, num, *sample_shape])`, jitted: the EMA weights' samples by
  `model.diffusion.sampler`, in the data's range, and the predicted clean samples of the last
  `keep_last` reverse steps (in the model's space: [-1, 1] for images), what Aithal et al.'s
  variance filter reads (`evaluation.filtering.trajectory_variance_score`). Same key, same
  samples for any `keep_last`.

  A class-conditional model (`model.conditioning = "embedding"`, on the dataset's
  `num_classes`) samples classes `labels [num]` int32 (None: arange(num) % num_classes) with
  classifier-free guidance of scale `model.diffusion.guidance_scale`; an unconditional one
  ignores `labels`."""
  cfg = model.diffusion
  schedule = make_schedule(cfg)
  classes = conditional_classes(model, num_classes)
  denoiser = build_denoiser(cfg, model.compute_dtype, classes)
  unit = model.output_range == "unit"

  def sample_fn(state, key, num, keep_last=0, labels=None):
    start_key, sample_key = jax.random.split(key)
    variables = {"params": state.ema_params}
    if classes:
      if labels is None:
        labels = jnp.arange(num, dtype=jnp.int32) % classes
      eps_fn = guided_eps(
        lambda x, t, y: denoiser.apply(variables, x, t, y),
        jnp.asarray(labels, jnp.int32),
        classes,
        float(cfg.guidance_scale),
      )
    else:
      eps_fn = lambda x, t: denoiser.apply(variables, x, t)
    x, x0_hats = sample(
      eps_fn,
      schedule,
      jax.random.normal(start_key, (num,) + tuple(sample_shape)),
      sample_key,
      num_steps=cfg.sampling_steps,
      sampler=cfg.sampler,
      variance=cfg.variance,
      clip=cfg.clip_denoised,
      keep_last=keep_last,
    )
    return (jnp.clip((x + 1.0) / 2.0, 0.0, 1.0) if unit else x), x0_hats

  return jax.jit(sample_fn, static_argnums=(2, 3))


def make_diffusion_family(
  model: ml_collections.ConfigDict,
  sample_shape,
  *,
  num_classes: int,
  optimizer: optax.GradientTransformation,
) -> Family:
  """DDPM of the `config.model` section `model` (its `diffusion` subsection)."""
  _check_config(model, sample_shape, num_classes)
  cfg = model.diffusion
  schedule = make_schedule(cfg)
  alpha_bars = jnp.asarray(schedule.alpha_bars, jnp.float32)
  classes = conditional_classes(model, num_classes)
  denoiser = build_denoiser(cfg, model.compute_dtype, classes)
  unit = model.output_range == "unit"
  ema_decay = float(cfg.ema_decay)

  def terms_fn(state, params, batch, key, train):
    del train  # The same loss in training and evaluation; no batch statistics.
    x0 = batch["image"] * 2.0 - 1.0 if unit else batch["image"]
    indices = noise.global_example_indices(x0.shape[0])
    t, eps = timesteps_and_noise(key, indices, cfg.num_timesteps, x0.shape[1:])
    if classes:
      labels = dropped_labels(key, indices, batch["label"], classes, cfg.label_dropout)
      eps_fn = lambda x, t: state.apply_fn({"params": params}, x, t, labels)
    else:
      eps_fn = lambda x, t: state.apply_fn({"params": params}, x, t)
    return {"loss": denoising_loss(eps_fn, x0, t, eps, alpha_bars)}, state.batch_stats

  def init(key):
    inputs = jnp.zeros((1,) + tuple(sample_shape), jnp.float32)
    init_labels = jnp.zeros((1,), jnp.int32) if classes else None
    params = denoiser.init(key, inputs, jnp.zeros((1,), jnp.int32), init_labels)["params"]
    return DiffusionState.create(
      apply_fn=denoiser.apply, params=params, tx=optimizer, ema_params=params
    )

  def train_step(state, batch, key):
    state, metrics = steps.mean_loss_train_step(state, batch, key, terms_fn=terms_fn)
    ema = optax.incremental_update(state.params, state.ema_params, step_size=1.0 - ema_decay)
    return state.replace(ema_params=ema), metrics

  def eval_step(state, batch, key):
    return steps.masked_eval_step(state, batch, key, terms_fn=terms_fn)

  sample_fn = make_sampler(model, sample_shape, num_classes)

  def generate(state, key, num, labels=None):
    """`num` samples `[num, *sample_shape]` of the EMA weights, by `model.diffusion.sampler`;
    conditional: of classes `labels [num]` (None: arange(num) % K), guided."""
    return sample_fn(state, key, num, 0, labels if classes else None)[0]

  return Family(
    init=init,
    train_step=train_step,
    eval_step=eval_step,
    generate=jax.jit(generate, static_argnums=2),
    reconstruct=None,
    conditional=bool(classes),
  )


FAMILIES.register("diffusion")(make_diffusion_family)
