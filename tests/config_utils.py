"""Loads a config file the way `--config=file.py:arg` does."""
import importlib.util
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
