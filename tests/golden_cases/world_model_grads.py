"""Golden check: gradient of the world-model loss w.r.t. every world-model parameter (docs/original.md §3.8, §4).

Our gradients are put back into the original's layout through the same converters (`port.torch_map`):
each converter is a pure reordering (transpose, flip, reshape), so applying it to an index array
gives the permutation, and scattering our gradient through it inverts the converter exactly.
"""
import numpy as np
from flax import nnx

from golden_cases.world_model_loss import build_world_model, run_loss
from twister_jax import port


def to_torch_layout(value, torch_shape, converter):
    """Inverse of a reordering converter: ``converter(result) == value``."""
    idx = np.arange(int(np.prod(torch_shape))).reshape(torch_shape)
    perm = np.asarray(converter(idx))
    assert perm.shape == np.shape(value), (perm.shape, np.shape(value))
    out = np.empty(int(np.prod(torch_shape)), np.float64)
    out[perm.reshape(-1)] = np.asarray(value, np.float64).reshape(-1)
    return out.reshape(torch_shape)


def check(fx):
    wm, cfg = build_world_model(fx)
    (total, _), grads = run_loss(fx, wm, cfg, grad=True)
    fx.assert_close("loss_total", total)
    pure = nnx.to_pure_dict(grads)
    mapping = port.torch_map(wm)
    expected = {k[len("grad/"):] for k in fx.outputs if k.startswith("grad/")}
    assert expected == set(mapping), (f"grad names differ: missing {sorted(expected - set(mapping))}, "
                                      f"extra {sorted(set(mapping) - expected)}")
    covered = set()
    for name, (path, conv) in sorted(mapping.items()):
        g = port.get_path(pure, path)
        fx.assert_close(f"grad/{name}", to_torch_layout(g, fx.params[name].shape, conv))
        covered.add(tuple(path))
    n_params = len(list(nnx.to_flat_state(grads)))
    assert len(covered) == n_params, f"{n_params - len(covered)} parameters have no original counterpart"
