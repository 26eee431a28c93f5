"""Host state as JSON plus arrays, never pickle (no jax import).

The host parts' `get_state()` values (NumPy RNG states, counters, observations in flight, emulator
states, metric accumulators) are nested dicts / lists / tuples of plain values, NumPy arrays and
scalars, bytes and `TimeStep`s. `encode` turns such a tree into a JSON-able tree and a flat dict of
NumPy arrays; `decode` inverts it exactly (dtypes, shapes, tuple-ness, NumPy scalar types,
integers of any size). Nothing else is accepted: an unknown type raises `TypeError` on save, and an
unknown tag or an object array raises `ValueError` on load, so a checkpoint can never carry code.

Tagged nodes are dicts with the key `"__t__"`:
  {"__t__": "array", "i": "a3"}                   a NumPy array, `arrays["a3"]`
  {"__t__": "empty", "dtype": "float32", "shape": [0, 3]}   an array with no elements
  {"__t__": "scalar", "i": "a4"}                  a NumPy scalar (0-d array on disk)
  {"__t__": "bytes", "i": "a5"}                   bytes, stored as a uint8 array
  {"__t__": "int", "v": "123..."}                 an int outside the int64 range
  {"__t__": "float", "v": "nan" | "inf" | "-inf"} a non-finite float
  {"__t__": "tuple", "v": [...]}                  a tuple
  {"__t__": "timestep", "v": {...}}               an `envs.base.TimeStep`
Dict keys must be strings; a plain dict that itself has the key "__t__" is refused.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from twister_jax.envs.base import TimeStep

_TAG = "__t__"
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def encode(tree: Any) -> tuple[Any, dict]:
    """tree -> (JSON-able tree, {name: np.ndarray}). Raises TypeError on an unsupported value."""
    arrays: dict = {}

    def put(a: np.ndarray) -> str:
        if a.dtype.hasobject:
            raise TypeError("object arrays cannot be saved (they would need pickle)")
        name = f"a{len(arrays)}"
        arrays[name] = a
        return name

    def enc(x):
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, int) and not isinstance(x, np.integer):
            return x if _INT64[0] <= x <= _INT64[1] else {_TAG: "int", "v": str(x)}
        if isinstance(x, float) and not isinstance(x, np.floating):
            return x if math.isfinite(x) else {_TAG: "float", "v": repr(x)}
        if isinstance(x, np.ndarray):
            if x.size == 0 and not x.dtype.hasobject:  # Orbax stores no zero-size arrays
                return {_TAG: "empty", "dtype": x.dtype.str, "shape": list(x.shape)}
            return {_TAG: "array", "i": put(np.ascontiguousarray(x))}
        if isinstance(x, np.generic):
            return {_TAG: "scalar", "i": put(np.asarray(x))}
        if isinstance(x, (bytes, bytearray)):
            if not x:
                return {_TAG: "bytes", "v": ""}
            return {_TAG: "bytes", "i": put(np.frombuffer(bytes(x), np.uint8).copy())}
        if isinstance(x, TimeStep):
            return {_TAG: "timestep", "v": {f.name: enc(getattr(x, f.name)) for f in dataclasses.fields(x)}}
        if isinstance(x, tuple):
            return {_TAG: "tuple", "v": [enc(v) for v in x]}
        if isinstance(x, list):
            return [enc(v) for v in x]
        if isinstance(x, dict):
            if _TAG in x:
                raise TypeError(f"a dict with the reserved key {_TAG!r} cannot be saved")
            bad = [k for k in x if not isinstance(k, str)]
            if bad:
                raise TypeError(f"dict keys must be strings, got {bad[0]!r}")
            return {k: enc(v) for k, v in x.items()}
        if hasattr(x, "__array__") and hasattr(x, "dtype"):  # a device array that reached the host
            return enc(np.asarray(x))
        raise TypeError(f"cannot save a value of type {type(x).__name__} in host state")

    return enc(tree), arrays


def decode(tree: Any, arrays: dict) -> Any:
    """Inverse of `encode`. Raises ValueError on an unknown tag, a missing or object array."""

    def get(name) -> np.ndarray:
        if name not in arrays:
            raise ValueError(f"host state refers to array {name!r}, which is missing")
        a = np.asarray(arrays[name])
        if a.dtype.hasobject:
            raise ValueError(f"host state array {name!r} holds Python objects; refused")
        return a

    def dec(x):
        if isinstance(x, list):
            return [dec(v) for v in x]
        if not isinstance(x, dict):
            return x
        if _TAG not in x:
            return {k: dec(v) for k, v in x.items()}
        tag = x[_TAG]
        if tag == "array":
            return np.array(get(x["i"]))
        if tag == "empty":
            dtype = np.dtype(x["dtype"])
            if dtype.hasobject:
                raise ValueError("host state holds an object array; refused")
            return np.zeros(tuple(int(d) for d in x["shape"]), dtype)
        if tag == "scalar":
            return get(x["i"])[()]
        if tag == "bytes":
            return b"" if "i" not in x else get(x["i"]).astype(np.uint8).tobytes()
        if tag == "int":
            return int(x["v"])
        if tag == "float":
            return float(x["v"])
        if tag == "tuple":
            return tuple(dec(v) for v in x["v"])
        if tag == "timestep":
            return TimeStep(**{k: dec(v) for k, v in x["v"].items()})
        raise ValueError(f"unknown tag {tag!r} in host state")

    return dec(tree)
