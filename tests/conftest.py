"""Shared test setup.

* JAX's persistent compilation cache (speeds up repeated CI runs and subprocesses).
* float32 "highest" matmul precision so golden comparisons are meaningful on any backend.
* `golden_dir()`: the fixture folder, from TWISTER_GOLDEN_DIR (relative paths resolve against the
  repository root), default ../shared/golden.
"""
import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path.home() / ".cache" / "twister_jax_jit"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("MUJOCO_GL", "egl")


def golden_dir() -> pathlib.Path:
    raw = os.environ.get("TWISTER_GOLDEN_DIR", "../shared/golden")
    path = pathlib.Path(raw)
    if not path.is_absolute():
        path = (REPO_ROOT / path).resolve()
    return path


def pytest_configure(config):
    try:
        import jax
    except ImportError:  # host-only test environments
        return
    jax.config.update("jax_default_matmul_precision", "highest")
    jax.config.update("jax_threefry_partitionable", True)
