"""The README's default job written as a plain PyTorch script, to time the project against.

Same training as `experiments/configs/vae_digits.py`: the 784-400-20 Bernoulli VAE on the
scikit-learn digits resized to 28x28 (same resize and split as `aigc_jax/data/digits.py`),
Adam lr 1e-3, batch 128, 1,500 steps; every 500 steps the test-split loss, a checkpoint
(`torch.save`) and PNG grids of samples and reconstructions, as the project's run writes.
It is the script a PyTorch user would write: no framework, data in memory, one process.

  python -m benchmarks.torch_default_job --out /tmp/torch_job   (needs `.[bench]`)
"""

import argparse
import hashlib
import os
import time

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits

from benchmarks import torch_reference


def _digits28():
  """Returns (train [1497, 1, 28, 28], test [300, 1, 28, 28]) float32 in [0, 1].

  The project's split and pixels (`aigc_jax/data/digits.py`), written out here so that this
  script imports nothing of the project's (whose data package imports tfds and jax).
  """
  images = load_digits().images / np.float32(16)
  order = sorted(
    range(len(images)), key=lambda i: hashlib.sha256(f"digits-{i}".encode()).hexdigest()
  )
  resized = np.stack(
    [
      np.asarray(Image.fromarray(image).resize((28, 28), Image.BILINEAR))
      for image in images.astype(np.float32)
    ]
  )
  pixels = np.round(np.clip(resized, 0, 1) * 255) / np.float32(255)
  as_tensor = lambda rows: torch.from_numpy(pixels[np.sort(rows)][:, None].astype(np.float32))
  return as_tensor(order[300:]), as_tensor(order[:300])


def _save_grid(images: torch.Tensor, path: str) -> None:
  """Writes `[N, 1, 28, 28]` images in [0, 1] as one PNG of 8 columns."""
  array = images.detach().clamp(0, 1).numpy()[:, 0]
  rows = -(-len(array) // 8)
  grid = np.zeros((rows * 28, 8 * 28), np.float32)
  for i, image in enumerate(array):
    grid[(i // 8) * 28 : (i // 8 + 1) * 28, (i % 8) * 28 : (i % 8 + 1) * 28] = image
  Image.fromarray((grid * 255).astype(np.uint8)).save(path)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--steps", type=int, default=1500)
  parser.add_argument("--every", type=int, default=500)
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  torch.manual_seed(0)
  train, test = _digits28()
  model = torch_reference._MLPVAE()
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  generator = torch.Generator().manual_seed(0)
  order = torch.randperm(len(train), generator=generator)
  position = 0
  start = time.perf_counter()
  for step in range(1, args.steps + 1):
    if position + 128 > len(order):  # A new epoch: reshuffle, drop the incomplete batch.
      order, position = torch.randperm(len(train), generator=generator), 0
    batch = train[order[position : position + 128]]
    position += 128
    loss = model.loss(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if step % args.every == 0 or step == args.steps:
      with torch.no_grad():
        test_loss = model.loss(test).item()
        samples = torch.sigmoid(model.decoder(torch.randn(64, 20))).view(-1, 1, 28, 28)
        mean, _ = model.encoder(test[:32].flatten(1)).chunk(2, dim=-1)
        reconstructions = torch.sigmoid(model.decoder(mean)).view(-1, 1, 28, 28)
      _save_grid(samples, os.path.join(args.out, f"samples_{step:08d}.png"))
      _save_grid(
        torch.cat([test[:32], reconstructions]),
        os.path.join(args.out, f"reconstructions_{step:08d}.png"),
      )
      torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step},
        os.path.join(args.out, f"checkpoint_{step}.pt"),
      )
      print(
        f"step {step}: train loss {loss.item():.2f}, test loss {test_loss:.2f}, "
        f"{time.perf_counter() - start:.1f} s"
      )


if __name__ == "__main__":
  main()
