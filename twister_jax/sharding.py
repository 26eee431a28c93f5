"""Devices: one `Mesh` with a `data` axis over all devices (docs/interfaces.md §5).

Parameters and optimiser states are replicated; the batch (and, inside the train step, the
imagination start states, which inherit the batch's layout) are sharded over `data`. The same code
runs on 1 CPU, 8 emulated CPU devices, one or many GPUs, and TPU slices. Multi-host: each host
samples `batch_size / process_count` windows from its own replay; `global_batch` assembles them into
global arrays. No `pmap`.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: all devices of all hosts)."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devices.reshape(-1), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises a ValueError when `batch_size` does not divide over the mesh's devices."""
    n = mesh.devices.size
    procs = jax.process_count()
    if batch_size % n or batch_size % procs:
        lo = max(n, (batch_size // n) * n)
        options = sorted({lo, lo + n, n * max(1, round(batch_size / n))})
        raise ValueError(f"config.batch_size={batch_size} does not divide over the {n} devices "
                         f"({procs} hosts); use a multiple of {n}, e.g. {', '.join(map(str, options))}")


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, replicated(mesh))


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles this host's part of the batch into global arrays sharded over `data`.

    Args:
      local_batch: dict of NumPy arrays with leading axis B / process_count (this host's windows).
      mesh: the data mesh.
    Returns:
      dict of global `jax.Array`s with leading axis B, sharded over `data`.
    """
    sharding = data_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}
