"""Devices: one `Mesh` with a `data` axis over all devices (docs/interfaces.md §5), or, for a group
of runs (`config.num_seeds` > 1, docs/architecture.md §9), a 2-D mesh `(runs, data)`.

Parameters and optimiser states are replicated; the batch (and, inside the train step, the
imagination start states, which inherit the batch's layout) are sharded over `data`. The same code
runs on 1 CPU, 8 emulated CPU devices, one or many GPUs, and TPU slices. Multi-host: each host
samples `batch_size / process_count` windows from its own replay; `global_batch` assembles them into
global arrays. No `pmap`.

Groups of R runs: `make_run_mesh(R)` puts `gcd(R, devices)` devices on the `runs` axis and the rest
on `data`; every leaf of the stacked train and acting states is split over `runs` on its leading
(run) axis, the stacked batch `(R, B, ...)` over `runs` and `data`. A device therefore holds whole
runs (and a slice of their batch when `data` > 1); the per-run numbers equal one device's up to the
order of the batch reductions, as for the data axis.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
RUNS_AXIS = "runs"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: all devices of all hosts)."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devices.reshape(-1), (DATA_AXIS,))


def make_run_mesh(num_runs: int, devices=None) -> Mesh:
    """A 2-D mesh `(runs, data)`: `gcd(num_runs, #devices)` devices over runs, the rest over data."""
    devices = np.asarray(jax.devices() if devices is None else devices).reshape(-1)
    r = int(np.gcd(int(num_runs), devices.size))
    return Mesh(devices.reshape(r, devices.size // r), (RUNS_AXIS, DATA_AXIS))


def mesh_for(config) -> Mesh:
    """The mesh a run of `config` uses: `make_mesh()`, or `make_run_mesh(num_seeds)` for a group."""
    n = int(config.get("num_seeds", 1))
    return make_mesh() if n == 1 else make_run_mesh(n)


def run_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (run) axis split over `runs` (stacked train and acting states)."""
    return NamedSharding(mesh, P(RUNS_AXIS))


def run_batch_sharded(mesh: Mesh) -> NamedSharding:
    """A stacked batch `(R, B, ...)`: runs over `runs`, each run's windows over `data`."""
    return NamedSharding(mesh, P(RUNS_AXIS, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises a ValueError when `batch_size` does not divide over the mesh's devices (its `data`
    axis for a run mesh: each run's batch is split over `data` only)."""
    names = getattr(mesh, "axis_names", (DATA_AXIS,))
    n = int(mesh.shape[DATA_AXIS]) if RUNS_AXIS in names else mesh.devices.size
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
