"""Importing parameters of the original PyTorch TWISTER into our nnx modules.

Every nnx module of `twister_jax.networks` implements

    torch_map(self) -> dict[str, tuple[tuple, Callable[[np.ndarray], np.ndarray]]]

mapping each original parameter name (relative to the module, e.g. ``"layers.0.weight"``) to the
path of the matching `nnx.Param` inside the module (as in ``nnx.state(module, nnx.Param)``) and a
function converting the PyTorch layout to ours (e.g. a transpose). Composite modules build their map
from their children's with `nest`. `load_torch_params` then checks the whole state dict against it
and raises one error naming every missing, unexpected and mis-shaped tensor.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

Converter = Callable[[np.ndarray], np.ndarray]
TorchMap = dict[str, tuple[tuple, Converter]]


def identity(x: np.ndarray) -> np.ndarray:
    return x


def linear_kernel(w: np.ndarray) -> np.ndarray:
    """torch Linear weight (out, in) -> Flax kernel (in, out)."""
    return np.asarray(w).T


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """torch Conv2d weight (out, in, kh, kw) -> Flax HWIO kernel."""
    return np.asarray(w).transpose(2, 3, 1, 0)


def nest(child: TorchMap, torch_prefix: str, path_prefix: tuple) -> TorchMap:
    """Prefixes a child module's map: torch names with `torch_prefix.`, paths with `path_prefix`."""
    tp = f"{torch_prefix}." if torch_prefix else ""
    return {tp + name: (tuple(path_prefix) + tuple(path), conv) for name, (path, conv) in child.items()}


class ParameterImportError(ValueError):
    """Raised when an original state dict does not match the module."""


def _get_path(tree, path):
    node = tree
    for key in path:
        node = node[key]
    return node


def load_torch_params(module, state_dict: Mapping[str, np.ndarray], prefix: str = "",
                      allow_unexpected: bool = False) -> None:
    """Copies original parameters into `module` in place.

    Args:
      module: an nnx module implementing `torch_map()`.
      state_dict: original parameter name -> array (PyTorch layout), e.g. the `params/*` of a
        golden fixture or an original checkpoint's `state_dict()` converted to NumPy.
      prefix: prefix of this module's names in `state_dict` (e.g. ``"encoder_network"``); names
        outside the prefix are ignored.
      allow_unexpected: when False, a name under `prefix` that the module does not use is an error.

    Raises:
      ParameterImportError naming every missing, unexpected or mis-shaped tensor.
    """
    from flax import nnx
    import jax.numpy as jnp

    mapping = nest(module.torch_map(), prefix, ())
    pre = f"{prefix}." if prefix else ""
    present = {k: v for k, v in state_dict.items() if k.startswith(pre) or not prefix}
    missing = sorted(set(mapping) - set(present))
    unexpected = sorted(set(present) - set(mapping)) if not allow_unexpected else []
    state = nnx.state(module, nnx.Param)
    pure = nnx.to_pure_dict(state)
    bad_shapes = []
    for name, (path, conv) in mapping.items():
        if name not in present:
            continue
        target = _get_path(pure, path)
        try:
            value = np.asarray(conv(np.asarray(present[name])))
        except (ValueError, IndexError) as err:  # a converter that reshapes rejects a wrong shape
            bad_shapes.append(f"{name}: got {tuple(np.shape(present[name]))}, expected a tensor that "
                              f"converts to {tuple(target.shape)} ({err})")
            continue
        if tuple(value.shape) != tuple(target.shape):
            bad_shapes.append(f"{name}: got {tuple(np.shape(present[name]))} -> {value.shape}, "
                              f"expected {tuple(target.shape)} at {'/'.join(map(str, path))}")
            continue
        parent = _get_path(pure, path[:-1])
        parent[path[-1]] = jnp.asarray(value, dtype=target.dtype)
    problems = []
    if missing:
        problems.append(f"missing tensors: {missing}")
    if unexpected:
        problems.append(f"unexpected tensors: {unexpected}")
    if bad_shapes:
        problems.append(f"mis-shaped tensors: {bad_shapes}")
    if problems:
        raise ParameterImportError(f"cannot import parameters into {type(module).__name__}: " + "; ".join(problems))
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(module, state)
