"""aigc-jax: generative models in JAX/Flax."""
