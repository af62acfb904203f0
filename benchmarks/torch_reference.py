"""PyTorch versions of the reference networks, for timing the JAX steps against (`.[bench]`).

Each network has the layer shapes of its JAX twin (`experiments/configs/mlp_vae.py`,
`dcgan28.py`, `conv_ae_mnist.py`), the same batch size and optimiser, and a train step
written the way PyTorch code usually is (NCHW, `loss.backward()`, `optimizer.step()`).
Initialisation does not matter for speed and is PyTorch's default. The DCGAN step follows
the PyTorch DCGAN example: one generator forward pass serves both updates, the
discriminator is updated first.

`make_step(name, batch_size, seed)` returns `step()`, which runs one training step on a fixed
random batch; `benchmarks.run` times it like the JAX step.
"""

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


class _MLPVAE(nn.Module):
  """784 -> 400 ReLU -> (mean, logvar) of 20; 20 -> 400 ReLU -> 784 Bernoulli logits."""

  def __init__(self, latent_dim: int = 20, hidden: int = 400, pixels: int = 784):
    super().__init__()
    self.encoder = nn.Sequential(
      nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim)
    )
    self.decoder = nn.Sequential(
      nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, pixels)
    )

  def loss(self, x):
    flat = x.flatten(1)
    mean, logvar = self.encoder(flat).chunk(2, dim=-1)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    logits = self.decoder(z)
    nll = F.binary_cross_entropy_with_logits(logits, flat, reduction="none").sum(-1)
    kl = 0.5 * torch.sum(mean.square() + logvar.exp() - 1.0 - logvar, dim=-1)
    return (nll + kl).mean()


class _ConvAE(nn.Module):
  """Conv 32, 64 (4x4, stride 2, ReLU) -> Dense 16; Dense 7*7*64 ReLU -> ConvT 32 ReLU -> ConvT 1."""

  def __init__(self, latent_dim: int = 16):
    super().__init__()
    self.encoder = nn.Sequential(
      nn.Conv2d(1, 32, 4, 2, 1),
      nn.ReLU(),
      nn.Conv2d(32, 64, 4, 2, 1),
      nn.ReLU(),
      nn.Flatten(),
      nn.Linear(7 * 7 * 64, latent_dim),
    )
    self.decoder = nn.Sequential(
      nn.Linear(latent_dim, 7 * 7 * 64),
      nn.ReLU(),
      nn.Unflatten(1, (64, 7, 7)),
      nn.ConvTranspose2d(64, 32, 4, 2, 1),
      nn.ReLU(),
      nn.ConvTranspose2d(32, 1, 4, 2, 1),
    )

  def loss(self, x):
    logits = self.decoder(self.encoder(x))
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3)).mean()


def _generator(latent_dim: int = 100):
  return nn.Sequential(
    nn.Linear(latent_dim, 7 * 7 * 128),
    nn.BatchNorm1d(7 * 7 * 128),
    nn.ReLU(),
    nn.Unflatten(1, (128, 7, 7)),
    nn.ConvTranspose2d(128, 64, 4, 2, 1),
    nn.BatchNorm2d(64),
    nn.ReLU(),
    nn.ConvTranspose2d(64, 1, 4, 2, 1),
    nn.Tanh(),
  )


def _discriminator():
  return nn.Sequential(
    nn.Conv2d(1, 64, 4, 2, 1),
    nn.LeakyReLU(0.2),
    nn.Conv2d(64, 128, 4, 2, 1),
    nn.BatchNorm2d(128),
    nn.LeakyReLU(0.2),
    nn.Flatten(),
    nn.Linear(7 * 7 * 128, 1),
  )


def _loss_step(model: nn.Module, images: torch.Tensor, learning_rate: float) -> Callable:
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = model.loss(images)
    loss.backward()
    optimizer.step()
    return loss.detach()

  return step


def _gan_step(images: torch.Tensor, latent_dim: int = 100) -> Callable:
  generator, discriminator = _generator(latent_dim), _discriminator()
  opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
  opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
  real = images * 2.0 - 1.0
  ones = torch.ones(len(images))
  zeros = torch.zeros(len(images))

  def step():
    z = torch.randn(len(images), latent_dim)
    fake = generator(z)
    opt_d.zero_grad(set_to_none=True)
    d_loss = F.binary_cross_entropy_with_logits(
      discriminator(real)[:, 0], ones
    ) + F.binary_cross_entropy_with_logits(discriminator(fake.detach())[:, 0], zeros)
    d_loss.backward()
    opt_d.step()
    opt_g.zero_grad(set_to_none=True)
    g_loss = F.binary_cross_entropy_with_logits(discriminator(fake)[:, 0], ones)
    g_loss.backward()
    opt_g.step()
    return d_loss.detach(), g_loss.detach()

  return step


NETWORKS = ("mlp_vae", "dcgan28", "conv_ae")


def make_step(name: str, batch_size: int, seed: int = 0) -> Callable[[], object]:
  """A no-argument train step of network `name` on a fixed random batch `[B, 1, 28, 28]`."""
  torch.manual_seed(seed)
  images = torch.rand(batch_size, 1, 28, 28)
  if name == "mlp_vae":
    return _loss_step(_MLPVAE(), images, 1e-3)
  if name == "conv_ae":
    return _loss_step(_ConvAE(), images, 1e-3)
  if name == "dcgan28":
    return _gan_step(images)
  raise ValueError(f"unknown network {name!r}; choose from {', '.join(NETWORKS)}")
