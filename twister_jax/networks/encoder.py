"""Encoder: images -> posterior logits (docs/original.md §3.1, §3.3).

``(..., 64, 64, 3)`` frames (uint8, preprocessed here as ``x/255 - 0.5``, or already-preprocessed
floats, e.g. the AC-CPC crops) -> 4 x [Conv 4x4/2 pad 1 no bias -> LN(channels, eps) -> SiLU]
-> flatten -> Linear -> logits ``(..., S, C)``.

Flatten order (ambiguous in a port, documented here): we flatten the NHWC map in our natural
``(y, x, c)`` order; the reference flattens ``(c, y, x)``. The reorder is done once, on import, by
the `twister_jax.port` converter of the representation Linear (its kernel rows are permuted), so the
forward needs no transpose and the parameters stay interchangeable with the original.

Convolutions go through `twister_jax.networks.conv.conv2d` (kernel HWIO, a plain `nnx.Param`).
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from twister_jax.networks import conv as conv_lib
from twister_jax.networks import layers


def preprocess(images: jax.Array) -> jax.Array:
    """uint8 -> ``float32(x)/255 - 0.5`` (docs/original.md §3.1); float input is returned as float32 unchanged."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0 - 0.5
    return images.astype(jnp.float32)


def conv(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
    """The single conv op of this file: torch Conv2d(k4, s2, p1, no bias), NHWC/HWIO."""
    return conv_lib.conv2d(x, kernel, stride=2, padding=1, impl=impl)


def layer_impl(impl: str, layer: int) -> str:
    """Conv implementation of encoder layer `layer` (0 = the 3-channel input layer).

    ``"auto"`` on CPU picks per layer what measured fastest for forward + backward at the Atari size
    (2048 frames, float32, 2-core CPU; CPU seconds at 512 frames, hybrid / matmul / xla): layer 0
    0.40 / 0.66 / 0.91 -> ``"hybrid"``; layer 1 2.08 / 1.44 / 2.80, layer 2 1.28 / 1.04 / 1.52,
    layer 3 0.75 / 0.67 / 0.66 -> ``"matmul"``. Elsewhere ``"auto"`` is XLA (`conv.conv2d`). An explicit
    impl applies to every layer.
    """
    if impl != "auto" or jax.default_backend() != "cpu":
        return impl
    return "hybrid" if layer == 0 else "matmul"


class Encoder(nnx.Module):
    """Conv encoder + representation Linear (docs/original.md §3.3).

    Args:
      dim_cnn: base width (layers 1x, 2x, 4x, 8x).
      stoch, discrete: latent layout S x C.
      ln_eps: LayerNorm eps (1e-3).
      image_size: square input size (64); the last map is ``image_size/16``.
      in_channels: 3.
      conv_impl: `conv.conv2d` implementation (``"auto"``: per layer on CPU, see `layer_impl`; XLA elsewhere).
      dtype: compute dtype; params `param_dtype`; LN statistics and the returned logits float32.
    """

    def __init__(self, *, dim_cnn: int = 32, stoch: int = 32, discrete: int = 32, ln_eps: float = 1e-3,
                 image_size: int = 64, in_channels: int = 3, conv_impl: str = "auto", dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.dim_cnn, self.stoch, self.discrete = dim_cnn, stoch, discrete
        self.image_size, self.in_channels = image_size, in_channels
        self.conv_impl, self.dtype = conv_impl, dtype
        widths = [in_channels] + [dim_cnn * 2 ** i for i in range(4)]
        self.kernels = nnx.List([
            nnx.Param(layers.dreamerv3_normal(rngs.params(), (4, 4, widths[i], widths[i + 1]), param_dtype))
            for i in range(4)])
        self.norms = nnx.List([layers.layer_norm(widths[i + 1], ln_eps, param_dtype=param_dtype, rngs=rngs)
                               for i in range(4)])
        self.final_size = image_size // 16
        self.flat_dim = widths[-1] * self.final_size ** 2
        self.repr = nnx.Linear(self.flat_dim, stoch * discrete, kernel_init=layers.xavier_uniform,
                               bias_init=layers.zeros, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    @classmethod
    def from_config(cls, model, *, dtype=jnp.float32, rngs: nnx.Rngs, **kw):
        """Build from the ``model`` config block (docs/interfaces.md §2)."""
        return cls(dim_cnn=model.dim_cnn, stoch=model.stoch, discrete=model.discrete, ln_eps=model.ln_eps,
                   dtype=dtype, rngs=rngs, **kw)

    def features(self, images: jax.Array) -> list[jax.Array]:
        """Per-layer NHWC maps ``(N, H_i, W_i, C_i)`` (N = flattened leading dims), in `dtype`."""
        x = preprocess(images)
        chex.assert_shape(x, (..., self.image_size, self.image_size, self.in_channels))
        x = x.reshape((-1,) + x.shape[-3:]).astype(self.dtype)
        outs = []
        for i, (kernel, norm) in enumerate(zip(self.kernels, self.norms)):
            y = conv(x, kernel[...].astype(self.dtype), layer_impl(self.conv_impl, i))
            x = jax.nn.silu(norm(y.astype(jnp.float32))).astype(self.dtype)
            outs.append(x)
        return outs

    def __call__(self, images: jax.Array, *, return_intermediates: bool = False):
        """Frames ``(..., H, W, 3)`` -> raw posterior logits ``(..., S, C)`` float32.

        With `return_intermediates`, also a dict with ``cnn_layer{i}`` (NHWC, flattened batch) and
        ``cnn_flat`` ``(..., flat_dim)`` in our ``(y, x, c)`` order.
        """
        lead = images.shape[:-3]
        maps = self.features(images)
        flat = maps[-1].reshape(lead + (self.flat_dim,))
        logits = self.repr(flat).astype(jnp.float32).reshape(lead + (self.stoch, self.discrete))
        if not return_intermediates:
            return logits
        inter = {f"cnn_layer{i}": m for i, m in enumerate(maps)}
        inter["cnn_flat"] = flat
        return logits, inter
