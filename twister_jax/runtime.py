"""Global JAX options shared by every entry point (train, evaluate, notebooks, tests)."""
from __future__ import annotations


def configure_jax(config) -> None:
    """Sets `jax_threefry_partitionable` and the default matmul precision from `config`; idempotent."""
    import jax

    jax.config.update("jax_threefry_partitionable", True)
    if config.matmul_precision:
        jax.config.update("jax_default_matmul_precision", config.matmul_precision)
