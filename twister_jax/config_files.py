"""Loading the config files of `configs/` (chosen as ``--config=configs/<file>.py:<arg>``).

Config files are loaded by path (ml_collections' `config_flags` does the same), so a config file
reaches its sibling `common.py` through `load_sibling` rather than a package import.
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys


def load_sibling(anchor_file: str, filename: str):
    """Imports `filename` from the folder of `anchor_file` once, under a unique module name."""
    path = pathlib.Path(anchor_file).resolve().with_name(filename)
    name = f"twister_jax_configs_{path.stem}_{abs(hash(str(path.parent)))}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def load_config(path, arg: str | None = None):
    """The config that ``--config=<path>:<arg>`` selects: ``get_config(arg)`` of the file at `path`
    (``get_config()`` without `arg`). For scripts and notebooks that build a config without the CLI."""
    path = pathlib.Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no config file {path}")
    spec = importlib.util.spec_from_file_location(f"twister_jax_config_{path.stem}_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config() if arg is None else module.get_config(arg)
