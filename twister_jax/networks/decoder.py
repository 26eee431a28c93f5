"""Decoder: flattened posterior sample -> mean image, and the MSE "distribution" (docs/original.md §3.5).

``(..., S*C)`` -> proj Linear (bias, no norm/act) -> ``(4, 4, 8 dim_cnn)`` -> 3 x [ConvT 4x4/2 pad 1,
no bias -> LN(channels, eps) -> SiLU] -> ConvT 4x4/2 pad 1 with bias -> ``(..., 64, 64, 3)``.

Layout (ambiguous in a port, documented here): the reference reshapes the projection as
``(c, y, x)``; we reshape ours as ``(y, x, c)`` (NHWC) and permute the proj kernel columns/bias in the
`twister_jax.port` converter instead, so the forward has no transpose.

Transposed convolutions go through `twister_jax.networks.conv.conv_transpose2d` (kernel
``(4, 4, Cin, Cout)``, not flipped, a plain `nnx.Param`).
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from twister_jax.networks import conv as conv_lib
from twister_jax.networks import layers


def conv_transpose(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
    """The single op of this file: torch ConvTranspose2d(k4, s2, p1, no bias), NHWC."""
    return conv_lib.conv_transpose2d(x, kernel, stride=2, padding=1, impl=impl)


def layer_impl(impl: str) -> str:
    """Conv implementation of the decoder layers: ``"auto"`` on CPU is ``"matmul"`` for every layer.

    Measured forward + backward at the Atari size (float32, 2-core CPU, CPU seconds at 256 frames,
    hybrid / matmul per layer): 0.37 / 0.29, 0.60 / 0.41, 0.79 / 0.57, 0.84 / 0.21 (the 3-channel
    output layer); stock XLA (lhs-dilated convolutions) was about 8x slower than either. Elsewhere
    ``"auto"`` is XLA (`conv.conv_transpose2d`). An explicit impl applies to every layer.
    """
    if impl != "auto" or jax.default_backend() != "cpu":
        return impl
    return "matmul"


def mse_log_prob(mean: jax.Array, target: jax.Array) -> jax.Array:
    """MSEDist log-prob: ``-sum_{H,W,C} (mean - target)^2`` over the last 3 axes, float32 (docs/original.md §3.5)."""
    d = jnp.asarray(mean, jnp.float32) - jnp.asarray(target, jnp.float32)
    return -jnp.sum(d * d, axis=(-3, -2, -1))


class Decoder(nnx.Module):
    """Latent -> image mean (docs/original.md §3.5).

    Args:
      feat_size: input size (S*C; only the latent is decoded, not h).
      dim_cnn: base width; the first map has ``8 dim_cnn`` channels.
      ln_eps: LayerNorm eps. image_size: output size (64). out_channels: 3.
      conv_impl: `conv.conv_transpose2d` implementation (``"auto"``: see `layer_impl`).
      dtype: compute dtype; params `param_dtype`; LN statistics float32; mean returned float32.
    """

    def __init__(self, feat_size: int, *, dim_cnn: int = 32, ln_eps: float = 1e-3, image_size: int = 64,
                 out_channels: int = 3, conv_impl: str = "auto", dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.feat_size, self.dim_cnn, self.image_size = feat_size, dim_cnn, image_size
        self.conv_impl, self.dtype = conv_impl, dtype
        self.start = image_size // 16
        widths = [dim_cnn * 8, dim_cnn * 4, dim_cnn * 2, dim_cnn, out_channels]
        self.widths = widths
        self.proj = nnx.Linear(feat_size, widths[0] * self.start ** 2, kernel_init=layers.xavier_uniform,
                               bias_init=layers.zeros, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        inits = [layers.dreamerv3_normal] * 3 + [layers.xavier_uniform]
        self.kernels = nnx.List([
            nnx.Param(inits[i](rngs.params(), (4, 4, widths[i], widths[i + 1]), param_dtype))
            for i in range(4)])
        self.norms = nnx.List([layers.layer_norm(widths[i + 1], ln_eps, param_dtype=param_dtype, rngs=rngs)
                               for i in range(3)])
        self.out_bias = nnx.Param(jnp.zeros((out_channels,), param_dtype))

    @classmethod
    def from_config(cls, model, *, dtype=jnp.float32, rngs: nnx.Rngs, **kw):
        return cls(model.stoch * model.discrete, dim_cnn=model.dim_cnn, ln_eps=model.ln_eps, dtype=dtype,
                   rngs=rngs, **kw)

    def __call__(self, latent: jax.Array, *, return_intermediates: bool = False):
        """``(..., feat_size)`` -> mean image ``(..., H, W, 3)`` float32 (preprocessed scale).

        With `return_intermediates`, also ``proj`` ``(..., s*s*c)`` in our ``(y, x, c)`` order and
        ``cnn_layer{i}`` NHWC maps over the flattened batch.
        """
        chex.assert_shape(latent, (..., self.feat_size))
        lead = latent.shape[:-1]
        proj = self.proj(latent.astype(self.dtype))
        x = proj.reshape((-1, self.start, self.start, self.widths[0]))
        inter = {"proj": proj}
        for i in range(4):
            x = conv_transpose(x, self.kernels[i][...].astype(self.dtype), layer_impl(self.conv_impl))
            if i < 3:
                x = jax.nn.silu(self.norms[i](x.astype(jnp.float32))).astype(self.dtype)
            else:
                x = x.astype(jnp.float32) + self.out_bias[...].astype(jnp.float32)
            inter[f"cnn_layer{i}"] = x
        mean = x.reshape(lead + x.shape[1:])
        return (mean, inter) if return_intermediates else mean
