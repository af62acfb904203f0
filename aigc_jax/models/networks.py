"""Builds encoder and decoder bodies from the config's `model.encoder` / `model.decoder`.

A body config (`experiments.configs.base.body`) holds `body`, the registered name, and the
body's own options (`widths`, `activation`, `norm`, `kernel_init`, `bias_before_norm`, and
body-specific ones such as the maxout body's `pieces`); each option is passed to the body.

`compute_dtype` (`config.model.compute_dtype`) names the dtype of activations and matrix
products: "float32" (the default; the body is built exactly as without it) or "bfloat16"
(for accelerators: parameters, optimiser states and losses stay float32).

`conv_impl` (`config.model.conv_impl`) picks how the convolutional bodies compute their
convolutions: "xla", "matmul" or "auto" (`bodies`' docstring); bodies without convolutions
(those without a `conv_impl` option) are built as without it.
"""

from typing import Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from aigc_jax.errors import ConfigError, UnknownNameError
from aigc_jax.models.bodies import DECODERS, ENCODERS
from aigc_jax.registry import unknown_name_message

COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}  # None: the bodies' float32.


def _options(body_config: ml_collections.ConfigDict) -> dict:
  options = {k: v for k, v in body_config.items() if k != "body"}
  options["widths"] = tuple(options["widths"])
  return options


def _dtype_option(compute_dtype: str) -> dict:
  """The body option for `compute_dtype`: none for float32, so any body builds as before."""
  if compute_dtype not in COMPUTE_DTYPES:
    raise UnknownNameError(
      unknown_name_message("compute dtype", compute_dtype, tuple(COMPUTE_DTYPES))
    )
  dtype = COMPUTE_DTYPES[compute_dtype]
  return {} if dtype is None else {"dtype": dtype}


def _build(registry, body_config, compute_dtype: str, conv_impl: str, **kwargs) -> nn.Module:
  body_class = registry.get(body_config.body)
  kwargs.update(_dtype_option(compute_dtype))
  if "conv_impl" in getattr(body_class, "__dataclass_fields__", {}):
    kwargs["conv_impl"] = conv_impl
  try:
    return body_class(**_options(body_config), **kwargs)
  except TypeError as e:  # An option this body does not have.
    raise ConfigError(
      f"Body {body_config.body!r} cannot take this config ({e}); remove the "
      "option or pick a body that has it."
    ) from None


def build_encoder(
  body_config: ml_collections.ConfigDict,
  out_features: int,
  batch_axis_name: Optional[str],
  spectral_norm: bool = False,
  compute_dtype: str = "float32",
  conv_impl: str = "xla",
) -> nn.Module:
  """Encoder body `[B, *sample_shape] -> [B, out_features]` named by `body_config.body`.

  `spectral_norm`: normalise every layer's weight by its largest singular value (the GAN
  discriminator's option, Miyato et al. 2018). `compute_dtype`, `conv_impl`: see the module
  docstring.
  """
  return _build(
    ENCODERS,
    body_config,
    compute_dtype,
    conv_impl,
    out_features=out_features,
    batch_axis_name=batch_axis_name,
    spectral_norm=spectral_norm,
  )


def build_decoder(
  body_config: ml_collections.ConfigDict,
  output_shape: Tuple[int, ...],
  batch_axis_name: Optional[str],
  compute_dtype: str = "float32",
  conv_impl: str = "xla",
) -> nn.Module:
  """Decoder body `[B, D] -> [B, *output_shape]` named by `body_config.body`;
  `compute_dtype`, `conv_impl`: see the module docstring."""
  return _build(
    DECODERS,
    body_config,
    compute_dtype,
    conv_impl,
    output_shape=tuple(output_shape),
    batch_axis_name=batch_axis_name,
  )
