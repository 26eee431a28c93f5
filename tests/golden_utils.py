"""Loading and comparing golden fixtures (see ../shared/golden/README.md).

A fixture is `<case>.json` (metadata, tolerances) + `<case>.npz` (params/, inputs/, outputs/).
Case checkers live in `tests/golden_cases/<case>.py` and define `check(fx: Fixture) -> None`.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np


@dataclasses.dataclass
class Fixture:
    name: str
    meta: dict
    params: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    @property
    def config(self) -> dict:
        return self.meta.get("config", {})

    def module_args(self, index: int = 0) -> dict:
        """Constructor args of the `index`-th module listed in the JSON."""
        mods = self.meta.get("modules", {})
        if isinstance(mods, dict):
            mods = list(mods.values())
        return mods[index].get("constructor_args", {})

    def tol(self, key: str) -> dict:
        return self.meta["tolerances"][key]

    def assert_close(self, key: str, actual: Any, *, where: np.ndarray | None = None) -> None:
        """Compares `actual` with outputs/<key> using the stored tolerance (exact when marked)."""
        expected = self.outputs[key]
        actual = np.asarray(actual, dtype=np.float64 if expected.dtype.kind == "f" else expected.dtype)
        assert actual.shape == expected.shape, f"{self.name}:{key}: shape {actual.shape} != {expected.shape}"
        tol = self.meta.get("tolerances", {}).get(key, {})
        kind = self.meta.get("arrays", {}).get(f"outputs/{key}", {}).get("kind", "float")
        exp = np.asarray(expected, dtype=np.float64)
        if where is not None:
            actual, exp = actual[where], exp[where]
        if tol.get("exact") or kind in ("onehot", "mask", "exact", "int"):
            np.testing.assert_array_equal(actual, exp, err_msg=f"{self.name}:{key} (exact)")
        else:
            np.testing.assert_allclose(actual, exp, rtol=tol.get("rtol", 1e-5), atol=tol.get("atol", 1e-6),
                                       err_msg=f"{self.name}:{key}")


def load_fixture(json_path: pathlib.Path) -> Fixture:
    meta = json.loads(json_path.read_text())
    arrs = np.load(json_path.with_suffix(".npz"))

    def part(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: arrs[k] for k in arrs.files if k.startswith(prefix)}

    return Fixture(json_path.stem, meta, part("params/"), part("inputs/"), part("outputs/"))
