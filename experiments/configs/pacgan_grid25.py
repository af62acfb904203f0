"""PacGAN on the 2-D grid of 25 Gaussians, the authors' protocol (Lin et al. 2018; code
fjxmlzn/PacGAN, `synthetic_data_experiments/2DGrid_GAN&PacGAN/`): everything as in
`pacgan_ring8.py` (networks, optimiser, 100 packs per step, 400,000 steps), on
`gaussian_grid25`. `--config experiments/configs/pacgan_grid25.py:M` sets the pack size M
(default 2; 1 is the plain GAN).
"""

from experiments.configs import pacgan_ring8


def get_config(pack_size: str = "2"):
  config = pacgan_ring8.get_config(pack_size)
  config.dataset.name = "gaussian_grid25"
  return config
