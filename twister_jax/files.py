"""Atomic file writes: the one helper every writer of the run directory uses (no jax import).

A write goes to a temporary sibling (`.<name>.tmp<pid>`), is flushed and fsynced, then renamed onto
the target, and the rename itself is made durable by fsyncing the folder. A kill at any moment
leaves either the old file or the new one, plus at most a stray temporary file.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Callable, Union

import numpy as np

Payload = Union[bytes, str, Callable[[Any], None]]


def atomic_write(path, payload: Payload) -> None:
    """Writes `payload` (bytes, str, or a function of a binary file object) to `path` atomically."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if callable(payload):
                payload(f)
            else:
                f.write(payload.encode("utf-8") if isinstance(payload, str) else payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def atomic_write_json(path, obj) -> None:
    """`obj` as indented JSON (NumPy scalars and arrays become numbers and lists), atomically."""
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n")
