"""Importing original weights: values land in place; bad state dicts are named, not half-applied."""
import numpy as np
import pytest
from flax import nnx

from twister_jax import port


class _Toy(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.lin = nnx.Linear(3, 4, rngs=rngs)
        self.layers = nnx.List([nnx.Linear(4, 2, use_bias=False, rngs=rngs)])


TABLE = {"lin.weight": (("lin", "kernel"), port.linear_kernel),
         "lin.bias": (("lin", "bias"), port.identity),
         "layers.0.weight": (("layers", 0, "kernel"), port.linear_kernel)}


def _sd():
    return {"net.lin.weight": np.arange(12.0).reshape(4, 3), "net.lin.bias": np.arange(4.0),
            "net.layers.0.weight": np.ones((2, 4)), "other.x": np.zeros(1)}


def test_values_are_converted_into_place():
    m = _Toy()
    port.load_torch_params(m, _sd(), "net", table=TABLE)
    np.testing.assert_array_equal(m.lin.kernel[...], np.arange(12.0).reshape(4, 3).T)
    np.testing.assert_array_equal(m.lin.bias[...], np.arange(4.0))
    np.testing.assert_array_equal(m.layers[0].kernel[...], np.ones((4, 2)))


def test_missing_unexpected_and_misshaped_are_all_named():
    m = _Toy()
    before = np.asarray(m.lin.kernel[...]).copy()
    sd = _sd()
    del sd["net.lin.bias"]
    sd["net.lin.weight"] = np.zeros((3, 3))
    sd["net.extra"] = np.zeros(2)
    with pytest.raises(port.ParameterImportError) as err:
        port.load_torch_params(m, sd, "net", table=TABLE)
    msg = str(err.value)
    assert "net.lin.bias" in msg and "net.extra" in msg and "net.lin.weight" in msg
    assert "other.x" not in msg
    np.testing.assert_array_equal(m.lin.kernel[...], before)  # nothing applied


def test_a_module_without_table_is_named():
    with pytest.raises(TypeError, match="_Toy"):
        port.torch_map(_Toy())
