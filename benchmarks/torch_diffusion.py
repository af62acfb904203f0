"""PyTorch twins of the diffusion family's denoisers, train step and samplers (`.[bench]`), for
timing the JAX ones against (`benchmarks.run --only=diffusion`).

The twins compute what ours compute, layer for layer, so a flax parameter tree copied in with
`load_flax_params` gives the same outputs (tests/benchmarks/test_torch_diffusion.py):
- `TemporalMLP`: `aigc_jax.models.denoisers.TemporalMLP`, unconditional: the sinusoidal
  embedding, Linear + LeakyReLU(0.02), ONE temporal layer applied `num_layers` times (shared
  weights, as Aithal et al. ran it), LayerNorm (eps 1e-5) and the output Linear. Like ours, with
  `num_timesteps` T set and a batch larger than T, the time path is computed once per timestep
  and its rows gathered by t (the same numbers, and the same work as our step does).
- `UNet`: `aigc_jax.models.unet.UNet`, unconditional, in NCHW: the same channels, levels,
  blocks, GroupNorm groups (flax's eps 1e-6), stride-2 downsampling convs padded as XLA's
  "SAME" pads them (one row and column after, none before), nearest x2 resize + conv on the
  way up, optional one-head attention at the lowest resolution.
- `make_train_step`: Ho's epsilon loss with per-example t and noise, Adam, and the EMA update
  of the weights (as `training.diffusion`'s step), written as PyTorch code usually is.
- `sample`: ancestral DDPM or DDIM over `sampling_timesteps`, as `training.diffusion.sample`.

Initialisation does not matter for speed and is PyTorch's default (or the copied flax one).
Submodules carry the names of the flax modules they twin, so a flax parameter path names the
torch module to copy into.
"""

import math
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aigc_jax.training.diffusion import sampling_timesteps

NEGATIVE_SLOPE = 0.02  # models/denoisers.py.
LAYER_NORM_EPSILON = 1e-5  # models/denoisers.py (torch's default).
GROUP_NORM_EPSILON = 1e-6  # flax's GroupNorm default, which models/unet.py keeps.


def sinusoidal_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
  """`[B, dim]` of timesteps `[B]`, as `models.denoisers.sinusoidal_embedding` (fairseq's)."""
  half = dim // 2
  frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - 1))
  angles = timesteps.float()[:, None] * frequencies[None, :]
  embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
  if dim % 2:
    embedding = F.pad(embedding, (0, 1))
  return embedding


def _leaky(x):
  return F.leaky_relu(x, NEGATIVE_SLOPE)


class TemporalLayer(nn.Module):
  """`[B, F], time embedding [B or 1, F] (or the [T, F] table and t [B]) -> [B, F]`."""

  def __init__(self, features: int):
    super().__init__()
    self.norm1 = nn.LayerNorm(features, eps=LAYER_NORM_EPSILON)
    self.fc1 = nn.Linear(features, features, bias=False)
    self.time = nn.Linear(features, features)
    self.norm2 = nn.LayerNorm(features, eps=LAYER_NORM_EPSILON)
    self.fc2 = nn.Linear(features, features, bias=False)

  def forward(self, x, time_embedding, time_index=None):
    time = self.time(time_embedding)
    if time_index is not None:
      time = time[time_index]
    h = self.fc1(_leaky(self.norm1(x))) + time
    return self.fc2(_leaky(self.norm2(h))) + x


class TemporalMLP(nn.Module):
  """`(x [B, *shape], t [B] or [1] int64) -> eps [B, *shape]`; shared temporal layer."""

  def __init__(self, features: int, width: int = 128, num_layers: int = 3, num_timesteps: int = 0):
    super().__init__()
    self.width, self.num_layers, self.num_timesteps = width, num_layers, num_timesteps
    self.time_projection = nn.Linear(width, width)
    self.input = nn.Linear(features, width, bias=False)
    self.temporal = TemporalLayer(width)  # ONE layer, applied num_layers times.
    self.output_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPSILON)
    self.output = nn.Linear(width, features)

  def forward(self, x, t):
    use_table = 0 < self.num_timesteps < t.shape[0]
    rows = torch.arange(self.num_timesteps) if use_table else t
    time_embedding = _leaky(self.time_projection(sinusoidal_embedding(rows, self.width)))
    time_index = t if use_table else None
    h = self.input(x.flatten(1))
    for _ in range(self.num_layers):
      h = self.temporal(h, time_embedding, time_index)
    return self.output(self.output_norm(h)).view(x.shape)


class ResidualBlock(nn.Module):
  """`[B, in, H, W], embedding [B or 1, E] -> [B, out, H, W]` (models/unet.py)."""

  def __init__(self, in_channels: int, features: int, groups: int, embedding_width: int):
    super().__init__()
    self.norm1 = nn.GroupNorm(groups, in_channels, eps=GROUP_NORM_EPSILON)
    self.conv1 = nn.Conv2d(in_channels, features, 3, padding=1)
    self.embedding = nn.Linear(embedding_width, features)
    self.norm2 = nn.GroupNorm(groups, features, eps=GROUP_NORM_EPSILON)
    self.conv2 = nn.Conv2d(features, features, 3, padding=1)
    self.skip = nn.Conv2d(in_channels, features, 1) if in_channels != features else None

  def forward(self, x, embedding):
    h = self.conv1(F.silu(self.norm1(x)))
    h = h + self.embedding(F.silu(embedding))[:, :, None, None]
    h = self.conv2(F.silu(self.norm2(h)))
    return (x if self.skip is None else self.skip(x)) + h


class SelfAttention(nn.Module):
  """One-head self-attention over the H * W positions of `[B, C, H, W]`, residual."""

  def __init__(self, channels: int, groups: int):
    super().__init__()
    self.norm = nn.GroupNorm(groups, channels, eps=GROUP_NORM_EPSILON)
    self.query, self.key, self.value, self.output = (
      nn.Linear(channels, channels) for _ in range(4)
    )

  def forward(self, x):
    batch, channels, height, width = x.shape
    h = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
    q, k, v = self.query(h), self.key(h), self.value(h)
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(channels), dim=-1)
    h = self.output(weights @ v)
    return x + h.transpose(1, 2).reshape(batch, channels, height, width)


class _SameStrideTwoConv(nn.Conv2d):
  """A 3x3 stride-2 conv padded as XLA's "SAME" (flax's default) pads an even input: one row
  and column after, none before (torch's padding=1 would shift the window by one pixel)."""

  def __init__(self, channels: int):
    super().__init__(channels, channels, 3, stride=2)

  def forward(self, x):
    return super().forward(F.pad(x, (0, 1, 0, 1)))


class UNet(nn.Module):
  """`(x [B, C, H, W], t [B] or [1] int64) -> eps [B, C, H, W]` (models/unet.py's layers)."""

  def __init__(
    self,
    image_channels: int,
    channels: int = 32,
    channel_multipliers: Sequence[int] = (1, 2, 2),
    res_blocks: int = 1,
    attention: bool = True,
    groups: int = 8,
  ):
    super().__init__()
    self.channels, self.levels, self.res_blocks = channels, tuple(channel_multipliers), res_blocks
    embedding_width = 4 * channels
    self.time_1 = nn.Linear(channels, embedding_width)
    self.time_2 = nn.Linear(embedding_width, embedding_width)
    self.input = nn.Conv2d(image_channels, channels, 3, padding=1)
    skip_channels, current = [channels], channels
    last = len(self.levels) - 1
    for level, multiplier in enumerate(self.levels):
      for i in range(res_blocks):
        block = ResidualBlock(current, channels * multiplier, groups, embedding_width)
        self.add_module(f"down_{level}_{i}", block)
        current = channels * multiplier
        skip_channels.append(current)
      if level != last:
        self.add_module(f"downsample_{level}", _SameStrideTwoConv(current))
        skip_channels.append(current)
    self.middle_1 = ResidualBlock(current, current, groups, embedding_width)
    self.middle_attention = SelfAttention(current, groups) if attention else None
    self.middle_2 = ResidualBlock(current, current, groups, embedding_width)
    for level in reversed(range(len(self.levels))):
      for i in range(res_blocks + 1):
        features = channels * self.levels[level]
        block = ResidualBlock(current + skip_channels.pop(), features, groups, embedding_width)
        self.add_module(f"up_{level}_{i}", block)
        current = features
      if level != 0:
        self.add_module(f"upsample_{level}", nn.Conv2d(current, current, 3, padding=1))
    self.output_norm = nn.GroupNorm(groups, current, eps=GROUP_NORM_EPSILON)
    self.output = nn.Conv2d(current, image_channels, 3, padding=1)

  def forward(self, x, t):
    embedding = self.time_2(F.silu(self.time_1(sinusoidal_embedding(t, self.channels))))
    h = self.input(x)
    skips = [h]
    last = len(self.levels) - 1
    for level in range(len(self.levels)):
      for i in range(self.res_blocks):
        h = getattr(self, f"down_{level}_{i}")(h, embedding)
        skips.append(h)
      if level != last:
        h = getattr(self, f"downsample_{level}")(h)
        skips.append(h)
    h = self.middle_1(h, embedding)
    if self.middle_attention is not None:
      h = self.middle_attention(h)
    h = self.middle_2(h, embedding)
    for level in reversed(range(len(self.levels))):
      for i in range(self.res_blocks + 1):
        h = getattr(self, f"up_{level}_{i}")(torch.cat([h, skips.pop()], dim=1), embedding)
      if level != 0:
        h = getattr(self, f"upsample_{level}")(F.interpolate(h, scale_factor=2, mode="nearest"))
    return self.output(F.silu(self.output_norm(h)))


def denoiser_of(diffusion_cfg, sample_shape: Sequence[int]) -> nn.Module:
  """The twin of `training.diffusion.build_denoiser(diffusion_cfg, ...)` (unconditional) for
  samples of `sample_shape` (ours: points `[F]` or images `[H, W, C]`)."""
  if diffusion_cfg.denoiser == "unet":
    return UNet(
      image_channels=sample_shape[-1],
      channels=diffusion_cfg.channels,
      channel_multipliers=tuple(diffusion_cfg.channel_multipliers),
      res_blocks=diffusion_cfg.res_blocks_per_level,
      attention=diffusion_cfg.attention,
      groups=diffusion_cfg.norm_groups,
    )
  if not diffusion_cfg.shared_temporal_layers:
    raise ValueError("The torch twin has the shared temporal layer only (Aithal et al.'s).")
  return TemporalMLP(
    features=math.prod(sample_shape),
    width=diffusion_cfg.width,
    num_layers=diffusion_cfg.num_temporal_layers,
    num_timesteps=diffusion_cfg.num_timesteps,
  )


def torch_shape(sample_shape: Sequence[int]) -> tuple:
  """The twin's layout of one sample: images `[H, W, C]` -> `[C, H, W]`; points unchanged."""
  sample_shape = tuple(sample_shape)
  return (sample_shape[-1],) + sample_shape[:-1] if len(sample_shape) == 3 else sample_shape


def load_flax_params(module: nn.Module, params: Mapping) -> None:
  """Copies a flax parameter tree of the twinned network into `module`, in place.

  Flax path `a/b/kernel` goes to torch module `a.b`: Dense kernels `[in, out]` transposed,
  Conv kernels `[kh, kw, in, out]` to `[out, in, kh, kw]`; `scale` (norms) to `weight`.
  Raises KeyError for a flax parameter without a twin, ValueError for a torch one left unset.
  """
  assigned = set()

  def visit(tree, path):
    for name, value in tree.items():
      if isinstance(value, Mapping):
        visit(value, path + (name,))
        continue
      target = module.get_submodule(".".join(path))
      array = torch.from_numpy(np.array(value, dtype=np.float32))
      if name == "kernel":
        array = array.permute(3, 2, 0, 1) if array.ndim == 4 else array.T
        attribute = "weight"
      else:
        attribute = {"bias": "bias", "scale": "weight", "embedding": "weight"}[name]
      parameter = getattr(target, attribute)
      if tuple(parameter.shape) != tuple(array.shape):
        raise ValueError(
          f"{'/'.join(path + (name,))}: flax {tuple(array.shape)} vs torch {tuple(parameter.shape)}"
        )
      with torch.no_grad():
        parameter.copy_(array)
      assigned.add(".".join(path + (attribute,)))

  visit(params, ())
  unset = [name for name, _ in module.named_parameters() if name not in assigned]
  if unset:
    raise ValueError(f"torch parameters without a flax twin: {unset}")


def denoising_loss(model: nn.Module, x0, t, eps, alpha_bars: torch.Tensor) -> torch.Tensor:
  """Ho's simple loss, the batch mean of per-example mean |model(x_t, t) - eps|^2."""
  alpha_bar = alpha_bars[t].view((-1,) + (1,) * (x0.dim() - 1))
  x_t = alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * eps
  return (model(x_t, t) - eps).square().flatten(1).mean(1).mean()


def make_train_step(
  config, sample_shape: Sequence[int], batch_size: int, seed: int = 0
) -> Callable[[], torch.Tensor]:
  """A no-argument DDPM train step of the twin of `config` (an experiment config of the
  diffusion family) on a fixed random batch `[batch_size, *torch_shape(sample_shape)]`: fresh
  per-example t and noise, Adam (the config's lr and betas), and the EMA of the weights."""
  from aigc_jax.training.diffusion import make_schedule

  torch.manual_seed(seed)
  cfg = config.model.diffusion
  model = denoiser_of(cfg, sample_shape)
  alpha_bars = torch.tensor(make_schedule(cfg).alpha_bars, dtype=torch.float32)
  x0 = torch.rand((batch_size,) + torch_shape(sample_shape))
  if config.model.output_range == "unit":
    x0 = x0 * 2.0 - 1.0
  optimizer = torch.optim.Adam(
    model.parameters(),
    lr=config.optimizer.learning_rate,
    betas=(config.optimizer.b1, config.optimizer.b2),
  )
  parameters = list(model.parameters())
  ema = [p.detach().clone() for p in parameters]
  ema_step = 1.0 - float(cfg.ema_decay)
  num_timesteps = cfg.num_timesteps

  def step():
    t = torch.randint(0, num_timesteps, (batch_size,))
    eps = torch.randn_like(x0)
    optimizer.zero_grad(set_to_none=True)
    loss = denoising_loss(model, x0, t, eps, alpha_bars)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
      torch._foreach_lerp_(ema, parameters, ema_step)  # pylint: disable=protected-access
    return loss.detach()

  return step


@torch.no_grad()
def sample(
  model: nn.Module,
  alpha_bars: np.ndarray,
  x_start: torch.Tensor,
  *,
  num_steps: int,
  sampler: str,
  variance: str,
  clip: bool = False,
  generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
  """The reverse process from `x_start` `[N, ...]` over `sampling_timesteps(T, num_steps)`, as
  `training.diffusion.sample` (module docstring there); DDPM noise from `generator`."""
  timesteps = sampling_timesteps(len(alpha_bars), num_steps)[::-1]
  bars = alpha_bars[timesteps]
  bars_prev = np.append(bars[1:], 1.0)
  x = x_start
  for j, t in enumerate(timesteps):
    alpha_bar, alpha_bar_prev = float(bars[j]), float(bars_prev[j])
    eps = model(x, torch.tensor([int(t)]))
    x0 = (x - math.sqrt(1.0 - alpha_bar) * eps) / math.sqrt(alpha_bar)
    if clip:
      x0 = x0.clamp(-1.0, 1.0)
      eps = (x - math.sqrt(alpha_bar) * x0) / math.sqrt(1.0 - alpha_bar)
    if sampler == "ddim":
      x = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1.0 - alpha_bar_prev) * eps
      continue
    beta = 1.0 - alpha_bar / alpha_bar_prev
    mean = (
      math.sqrt(alpha_bar_prev) * beta / (1.0 - alpha_bar) * x0
      + math.sqrt(1.0 - beta) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * x
    )
    var = beta if variance == "large" else (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta
    is_last = j == len(timesteps) - 1
    x = mean if is_last else mean + math.sqrt(var) * torch.randn(x.shape, generator=generator)
  return x


def make_sampler(
  config, sample_shape: Sequence[int], num_samples: int, seed: int = 0
) -> Callable[[], torch.Tensor]:
  """A no-argument call drawing `num_samples` samples with the twin of `config`'s denoiser by
  `model.diffusion.sampler` over its `sampling_steps` (from fresh N(0, I) starts)."""
  from aigc_jax.training.diffusion import make_schedule

  torch.manual_seed(seed)
  cfg = config.model.diffusion
  model = denoiser_of(cfg, sample_shape).eval()
  alpha_bars = make_schedule(cfg).alpha_bars
  shape = (num_samples,) + torch_shape(sample_shape)

  def draw():
    return sample(
      model,
      alpha_bars,
      torch.randn(shape),
      num_steps=cfg.sampling_steps,
      sampler=cfg.sampler,
      variance=cfg.variance,
      clip=cfg.clip_denoised,
    )

  return draw
