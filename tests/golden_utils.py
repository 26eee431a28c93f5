"""Finding, loading and comparing golden fixtures (format: tests/golden/README.md).

A fixture is `<case>.json` (metadata, tolerances) + `<case>.npz` (params/, inputs/, outputs/).
Case checkers live in `tests/golden_cases/<case>.py` and define `check(fx: Fixture) -> None`.

The fixture folder is `tests/golden/` in the repository, or the folder named by the environment
variable TWISTER_GOLDEN_DIR (a relative path resolves against the repository root). Every fixture
in it (every `*.json` or `*.npz` basename) is one golden test; a missing folder, a folder with no
fixtures, or a variable set to an empty string is an error (`GoldenDirError`), not a silent pass.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import numpy as np

ENV_VAR = "TWISTER_GOLDEN_DIR"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO_ROOT / "tests" / "golden"


class GoldenDirError(FileNotFoundError):
    """The fixture folder is unusable: set, but empty; missing; or holding no fixtures."""


def _source() -> str:
    raw = os.environ.get(ENV_VAR)
    return f"{ENV_VAR}={raw!r}" if raw is not None else f"the default (unset {ENV_VAR})"


def golden_dir() -> pathlib.Path:
    """The fixture folder: TWISTER_GOLDEN_DIR if set (relative to the repository root), else tests/golden."""
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return DEFAULT_DIR
    if not raw.strip():
        raise GoldenDirError(f"{ENV_VAR} is set to an empty string: unset it to use the fixtures in "
                             f"{DEFAULT_DIR}, or set it to a folder of fixtures")
    path = pathlib.Path(raw).expanduser()
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path.resolve()


def fixture_files() -> list[pathlib.Path]:
    """`<folder>/<case>.json` for every fixture basename in the folder (one golden test each).

    A basename with only its `.npz` is listed too, so that its test fails (`load_fixture`) rather than
    the fixture being skipped unseen.
    """
    folder = golden_dir()
    if not folder.is_dir():
        raise GoldenDirError(f"golden fixture folder {folder} (from {_source()}) does not exist")
    stems = sorted({p.stem for p in folder.glob("*.json")} | {p.stem for p in folder.glob("*.npz")})
    if not stems:
        raise GoldenDirError(f"golden fixture folder {folder} (from {_source()}) holds no fixtures "
                             "(<case>.json + <case>.npz)")
    return [folder / f"{stem}.json" for stem in stems]


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
    missing = [p.name for p in (json_path, json_path.with_suffix(".npz")) if not p.is_file()]
    if missing:
        raise GoldenDirError(f"fixture {json_path.stem} in {json_path.parent} is incomplete: no {', '.join(missing)}")
    meta = json.loads(json_path.read_text())
    arrs = np.load(json_path.with_suffix(".npz"))

    def part(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: arrs[k] for k in arrs.files if k.startswith(prefix)}

    return Fixture(json_path.stem, meta, part("params/"), part("inputs/"), part("outputs/"))
