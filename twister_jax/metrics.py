"""A train step's scalar metrics packed into one float32 vector, readable as a dict.

The train step returns about 40 scalars. As separate device arrays each one is a buffer to track and,
in the training loop, a value to pack or fetch every step; packed inside the jitted step they are one
array: the loop keeps it as it is (`outputs.MetricLog`) and fetches once per log row.

`Metrics` is a read-only `Mapping` name -> value (``packed[..., i]``) and a JAX pytree whose only
leaf is ``packed``: float32 ``(K,)`` for one run, ``(R, K)`` for a group's R runs (the names are
static). `jax.device_get`, `take_run` and the group's split work on it as on any pytree.
"""
from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp


@jax.tree_util.register_pytree_node_class
class Metrics(Mapping):
    """Named scalar metrics packed in ``packed`` float32 ``(..., K)`` (module docstring)."""

    def __init__(self, names: tuple, packed):
        self.names = tuple(names)
        self.packed = packed
        self._index = {n: i for i, n in enumerate(self.names)}

    @classmethod
    def pack(cls, metrics: dict) -> "Metrics":
        """{name: float32 scalar (or (R,) over runs)} -> Metrics (one stack; call it inside a jit)."""
        return cls(tuple(metrics), jnp.stack([jnp.asarray(v, jnp.float32) for v in metrics.values()], axis=-1))

    def __getitem__(self, name: str):
        return self.packed[..., self._index[name]]

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"Metrics({len(self.names)} names, packed {getattr(self.packed, 'shape', '?')})"

    def tree_flatten(self):
        return (self.packed,), self.names

    @classmethod
    def tree_unflatten(cls, names, children):
        return cls(names, children[0])
