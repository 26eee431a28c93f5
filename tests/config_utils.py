"""Loads a config file the way `--config=file.py:arg` does; the environment of a training subprocess."""
import importlib.util
import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config_module(name: str):
    path = REPO_ROOT / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"twister_test_configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config(name: str, arg: str):
    return load_config_module(name).get_config(arg)


def subprocess_env(fast_compile: bool = False) -> dict:
    """The environment of a training subprocess: this checkout on PYTHONPATH; for runs of hundreds of steps
    XLA's default CPU optimisation level (the user's XLA_FLAGS), not the tests' compile-fast level 0
    (conftest); runs of a few dozen steps (`fast_compile`) keep level 0: compiling dominates them."""
    env = dict(os.environ)
    if not fast_compile:
        env["XLA_FLAGS"] = env.get("TWISTER_TEST_XLA_FLAGS_ORIG", env.get("XLA_FLAGS", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    return env


def tiny_config(variant: str = "fake", **overrides):
    """`configs/tiny.py:<variant>` with dotted-key overrides, e.g. `**{"quirks.imagination_flag_shift": False}`."""
    config = get_config("tiny", variant)
    with config.unlocked():
        for k, v in overrides.items():
            obj = config
            *path, last = k.split(".")
            for p in path:
                obj = obj[p]
            obj[last] = v
    return config
