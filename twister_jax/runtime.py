"""Global JAX options shared by every entry point (train, evaluate, the agent, notebooks, tests).

* ``jax_threefry_partitionable = True``: random draws do not depend on how an array is sharded, so
  one device and a mesh draw the same numbers (docs/interfaces.md §4; tests/test_sharding_train.py).
* ``jax_default_matmul_precision = config.matmul_precision`` (``"highest"``, ``"high"`` or
  ``"default"``; ``"default"`` lets GPUs use TF32).

Both options are part of JAX's trace context: a function jitted before a change is retraced, not
reused with the old setting.
"""
from __future__ import annotations


def configure_jax(config) -> None:
    """Sets `jax_threefry_partitionable` and the default matmul precision from `config`; idempotent."""
    import jax

    jax.config.update("jax_threefry_partitionable", True)
    if config.matmul_precision:
        jax.config.update("jax_default_matmul_precision", config.matmul_precision)
