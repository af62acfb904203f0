"""Builds encoder and decoder bodies from the config's `model.encoder` / `model.decoder`."""
from typing import Optional, Tuple

import flax.linen as nn
import ml_collections

from aigc_jax.models.bodies import DECODERS, ENCODERS


def build_encoder(body_config: ml_collections.ConfigDict, out_features: int,
                  batch_axis_name: Optional[str]) -> nn.Module:
  """Encoder body `[B, H, W, C] -> [B, out_features]` named by `body_config.body`."""
  return ENCODERS.get(body_config.body)(
      out_features=out_features, widths=tuple(body_config.widths),
      activation=body_config.activation, norm=body_config.norm,
      batch_axis_name=batch_axis_name)


def build_decoder(body_config: ml_collections.ConfigDict, output_shape: Tuple[int, int, int],
                  batch_axis_name: Optional[str]) -> nn.Module:
  """Decoder body `[B, D] -> [B, *output_shape]` named by `body_config.body`."""
  return DECODERS.get(body_config.body)(
      output_shape=tuple(output_shape), widths=tuple(body_config.widths),
      activation=body_config.activation, norm=body_config.norm,
      batch_axis_name=batch_axis_name)
