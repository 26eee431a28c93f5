"""Shared building blocks (docs/original.md §3.2) and the initialisers of docs/original.md §6.4.

Initialisers are `jax.nn.initializers`-style callables ``init(key, shape, dtype)``. Kernels are in
Flax layout: Dense ``(in, out)``, Conv HWIO ``(kh, kw, in, out)``; fans include the receptive field.

Blocks:
  * `DenseNormAct`: Linear (no bias) -> LayerNorm (float32 statistics, eps) -> optional SiLU.
  * `MLP`: ``layers`` x DenseNormAct with SiLU (the "2 x 512" trunk of every head).
  * `Linear`: a plain Linear with bias.

The original's parameter names of every module are in `twister_jax.port`.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def _fans(shape):
    """(fan_in, fan_out) of a Flax kernel: Dense (in, out) or conv (..spatial.., in, out)."""
    if len(shape) < 2:
        raise ValueError(f"kernel shape needs 2+ dims, got {shape}")
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def dreamerv3_normal(key, shape, dtype=jnp.float32):
    """docs/original.md §6.4: truncated normal on [-2 s, 2 s] with s = 1.1368 sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    std = 1.1368 * math.sqrt(2.0 / (fan_in + fan_out))
    return (std * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)).astype(dtype)


def xavier_uniform(key, shape, dtype=jnp.float32):
    """docs/original.md §6.4: U(-b, b), b = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(dtype)


def torch_default_uniform(fan_in: int):
    """PyTorch default Linear/Conv init (weights and biases): U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(dtype)

    return init


def torch_default_kernel(key, shape, dtype=jnp.float32):
    """PyTorch default kernel init with the fan-in read from the kernel shape."""
    return torch_default_uniform(_fans(shape)[0])(key, shape, dtype)


zeros = nnx.initializers.zeros


def layer_norm(features: int, eps: float, *, param_dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """LayerNorm over the last axis, two-pass (biased) variance, computed in float32."""
    return nnx.LayerNorm(features, epsilon=eps, use_fast_variance=False, dtype=jnp.float32,
                         param_dtype=param_dtype, rngs=rngs)


class Linear(nnx.Module):
    """Linear with (optional) bias.

    Args:
      fin, fout: sizes. kernel_init / bias_init: docs/original.md §6.4 initialisers.
      dtype: compute dtype (inputs and params are cast to it); params stored in `param_dtype`.
    """

    def __init__(self, fin: int, fout: int, *, use_bias: bool = True, kernel_init=xavier_uniform,
                 bias_init=zeros, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.linear = nnx.Linear(fin, fout, use_bias=use_bias, kernel_init=kernel_init,
                                 bias_init=bias_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.use_bias = use_bias

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x)


class DenseNormAct(nnx.Module):
    """Linear (no bias) -> LayerNorm(eps, float32) -> SiLU if `act` (docs/original.md §3.2).

    Input ``(..., fin)`` in any float dtype; output ``(..., fout)`` float32 after the LN (callers
    cast to their compute dtype as needed; the next Linear casts anyway).
    """

    def __init__(self, fin: int, fout: int, *, eps: float = 1e-3, act: bool = True,
                 kernel_init=dreamerv3_normal, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.dense = nnx.Linear(fin, fout, use_bias=False, kernel_init=kernel_init, dtype=dtype,
                                param_dtype=param_dtype, rngs=rngs)
        self.norm = layer_norm(fout, eps, param_dtype=param_dtype, rngs=rngs)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.norm(self.dense(x).astype(jnp.float32))
        return jax.nn.silu(y) if self.act else y


class MLP(nnx.Module):
    """`layers` x (Dense no bias -> LN -> SiLU): the head trunk "2 x 512" (docs/original.md §3.2).

    Input ``(..., fin)``, output ``(..., hidden)`` in `dtype`.
    """

    def __init__(self, fin: int, hidden: int, layers: int = 2, *, eps: float = 1e-3,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.dtype = dtype
        self.layers = nnx.List([
            DenseNormAct(fin if i == 0 else hidden, hidden, eps=eps, act=True, dtype=dtype,
                         param_dtype=param_dtype, rngs=rngs) for i in range(layers)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x).astype(self.dtype)
        return x
