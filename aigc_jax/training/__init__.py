"""Training: train states, per-device steps, data parallelism and the one loop."""

from aigc_jax.training import autoencoders, classifier, diffusion, gan  # noqa: F401  (registers the families)
from aigc_jax.training.loop import train_and_evaluate  # noqa: F401
