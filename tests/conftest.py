"""Shared test setup.

* JAX's persistent compilation cache (speeds up repeated CI runs and subprocesses).
* XLA's CPU backend optimisation level (LLVM) lowered to ``TWISTER_TEST_XLA_OPT_LEVEL`` (default 0) for
  this process and the subprocesses it starts: the tiny test configs spend far more time compiling
  than running (the tiny train step: 39 s to compile at the default level 3, 13 s at level 0, while a
  step takes 145 ms vs 280 ms). XLA's HLO optimisations are unchanged; LLVM's vectorisation is not, so
  values agree with a default-level build to float32 rounding (reduction order), not bit for bit.
  Set ``TWISTER_TEST_XLA_OPT_LEVEL=default`` to test with XLA's defaults. The end-to-end training
  subprocesses (tests/test_program.py) run at the user's own XLA_FLAGS: they run hundreds of steps.
* float32 "highest" matmul precision so golden comparisons are meaningful on any backend.
* `golden_dir()`: the golden fixture folder, tests/golden/ or TWISTER_GOLDEN_DIR (resolved in
  tests/golden_utils.py, re-exported here for the tests that import it from conftest).
"""
import os
import pathlib

from golden_utils import golden_dir  # noqa: F401  (imported by tests as `from conftest import golden_dir`)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path.home() / ".cache" / "twister_jax_jit"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("MUJOCO_GL", "egl")

# XLA_FLAGS as the user set them: subprocesses that run many steps (the end-to-end training runs,
# the notebook) restore them, since at level 0 their steps run ~2x slower than compiling saves.
os.environ.setdefault("TWISTER_TEST_XLA_FLAGS_ORIG", os.environ.get("XLA_FLAGS", ""))
_OPT_LEVEL = os.environ.get("TWISTER_TEST_XLA_OPT_LEVEL", "0")
if _OPT_LEVEL != "default" and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_backend_optimization_level={_OPT_LEVEL}").strip()


def pytest_configure(config):
    try:
        import jax
    except ImportError:  # host-only test environments
        return
    jax.config.update("jax_default_matmul_precision", "highest")
    jax.config.update("jax_threefry_partitionable", True)
