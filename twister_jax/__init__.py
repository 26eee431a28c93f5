"""twister_jax: TWISTER (Burchi & Timofte, ICLR 2025) in JAX/Flax.

This package's top level imports nothing heavy (no jax), so host-side modules
(`twister_jax.envs`, `twister_jax.replay`, `twister_jax.writers`) stay jax-free.
"""
__version__ = "0.1.0"
