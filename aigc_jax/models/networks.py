"""Builds encoder and decoder bodies from the config's `model.encoder` / `model.decoder`.

A body config (`experiments.configs.base.body`) holds `body`, the registered name, and the
body's own options (`widths`, `activation`, `norm`, `kernel_init`, `bias_before_norm`, and
body-specific ones such as the maxout body's `pieces`); each option is passed to the body.
"""
from typing import Optional, Tuple

import flax.linen as nn
import ml_collections

from aigc_jax.errors import ConfigError
from aigc_jax.models.bodies import DECODERS, ENCODERS


def _options(body_config: ml_collections.ConfigDict) -> dict:
  options = {k: v for k, v in body_config.items() if k != "body"}
  options["widths"] = tuple(options["widths"])
  return options


def _build(registry, body_config, **kwargs) -> nn.Module:
  body_class = registry.get(body_config.body)
  try:
    return body_class(**_options(body_config), **kwargs)
  except TypeError as e:  # An option this body does not have.
    raise ConfigError(f"Body {body_config.body!r} cannot take this config ({e}); remove the "
                      "option or pick a body that has it.") from None


def build_encoder(body_config: ml_collections.ConfigDict, out_features: int,
                  batch_axis_name: Optional[str], spectral_norm: bool = False) -> nn.Module:
  """Encoder body `[B, *sample_shape] -> [B, out_features]` named by `body_config.body`.

  `spectral_norm`: normalise every layer's weight by its largest singular value (the GAN
  discriminator's option, Miyato et al. 2018).
  """
  return _build(ENCODERS, body_config, out_features=out_features,
                batch_axis_name=batch_axis_name, spectral_norm=spectral_norm)


def build_decoder(body_config: ml_collections.ConfigDict, output_shape: Tuple[int, ...],
                  batch_axis_name: Optional[str]) -> nn.Module:
  """Decoder body `[B, D] -> [B, *output_shape]` named by `body_config.body`."""
  return _build(DECODERS, body_config, output_shape=tuple(output_shape),
                batch_axis_name=batch_axis_name)
