"""4x4 stride-2 convolutions of the encoder and decoder (docs/original.md §3.3, §3.5), in three implementations.

Layouts (both ops): activations NHWC, kernels HWIO ``(kh, kw, Cin, Cout)``, no bias.

* `conv2d(x, k)` == torch ``Conv2d(Cin, Cout, 4, stride=2, padding=1, bias=False)``:
  ``out[n, y, x, o] = sum_{a, b, i} xpad[n, 2y + a, 2x + b, i] * k[a, b, i, o]`` with ``xpad`` the
  input zero-padded by 1 on every side; ``(N, H, W, Cin) -> (N, H/2, W/2, Cout)``.
  Kernel from the torch weight ``W (Cout, Cin, kh, kw)``: `port.conv_kernel` = ``W.transpose(2, 3, 1, 0)``.
* `conv_transpose2d(x, k)` == torch ``ConvTranspose2d(Cin, Cout, 4, stride=2, padding=1, bias=False)``
  (the gradient of `conv2d` w.r.t. its input, with Cin/Cout swapped): every input pixel scatters
  ``x[n, iy, ix, :] @ k[a, b]`` to output pixel ``(2 iy - 1 + a, 2 ix - 1 + b)`` (dropped if outside);
  ``(N, H, W, Cin) -> (N, 2H, 2W, Cout)``. The kernel is NOT spatially flipped:
  `port.conv_transpose_kernel` = ``W.transpose(2, 3, 0, 1)`` from the torch weight ``W (Cin, Cout, kh, kw)``,
  i.e. ``k[a, b, i, o] = W[i, o, a, b]``. (Flax ``nn.ConvTranspose(transpose_kernel=False)`` would need the
  flipped kernel ``k[::-1, ::-1]``; docs/original.md §3.5.)

Implementations (``impl=``):

* ``"xla"``: `lax.conv_general_dilated` for the op; gradients by JAX autodiff. The choice for GPU/TPU
  (cuDNN / TPU convolutions; not benchmarked here, no accelerator was available).
* ``"matmul"``: patches (im2col from shifted slices of the space-to-depth image) + one matmul, with a
  hand-written `jax.custom_vjp` (input and kernel gradients also patches / overlap-add + one matmul each).
  XLA on CPU computes convolution kernel gradients very slowly (docs/architecture.md §8).
* ``"hybrid"``: XLA for the forward op and for the input gradient (the adjoint conv), patches + one matmul
  only for the kernel gradient (`jax.custom_vjp`). On CPU its forward is as fast as ``"xla"`` (2-3x faster
  than ``"matmul"``, whose patch extraction / overlap-add costs memory traffic) and its forward+backward
  about as fast as ``"matmul"`` or faster (experiments/benchmark_conv.py).
* ``"auto"``: ``"hybrid"`` when ``jax.default_backend() == "cpu"``, else ``"xla"``.
  `lax.conv_general_dilated_patches` was measured as a patch extractor and was not faster than slicing.

Dtypes: the computation runs in the dtype of ``x`` (the compute dtype, e.g. bfloat16); the kernel is cast
to it. Products are accumulated in float32 (``preferred_element_type``) and the result is cast back to
``x.dtype``. Gradients come back in the dtypes of the primal inputs.

Only kernel 4, stride 2, padding 1 is supported (the only case the model uses); other values raise.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def _check(x, kernel, stride, padding):
    if stride != 2 or padding != 1 or kernel.shape[:2] != (4, 4):
        raise ValueError(f"only kernel 4x4, stride 2, padding 1 is implemented; got kernel "
                         f"{kernel.shape}, stride {stride}, padding {padding}")
    if x.ndim != 4 or kernel.ndim != 4 or x.shape[-1] != kernel.shape[2]:
        raise ValueError(f"expected x (N, H, W, Cin) and kernel (4, 4, Cin, Cout); got {x.shape}, {kernel.shape}")


IMPLS = ("xla", "matmul", "hybrid")


def _resolve(impl: str) -> str:
    if impl == "auto":
        return "hybrid" if jax.default_backend() == "cpu" else "xla"
    if impl not in IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}; allowed: 'xla', 'matmul', 'hybrid', 'auto'")
    return impl


# ----------------------------------------------------------------------------------------- XLA --

def _conv_xla(x, k):
    out = lax.conv_general_dilated(
        x, k.astype(x.dtype), window_strides=(2, 2), padding=((1, 1), (1, 1)),
        dimension_numbers=_DN, preferred_element_type=jnp.float32)
    return out.astype(x.dtype)


def _conv_transpose_xla(x, k):
    # Dilate the input by 2, pad k - 1 - p = 2 on every side, correlate with the flipped kernel.
    out = lax.conv_general_dilated(
        x, k[::-1, ::-1].astype(x.dtype), window_strides=(1, 1), padding=((2, 2), (2, 2)),
        lhs_dilation=(2, 2), dimension_numbers=_DN, preferred_element_type=jnp.float32)
    return out.astype(x.dtype)


# ---------------------------------------------------------------------------------- public API --

def conv2d(x: jax.Array, kernel: jax.Array, *, stride: int = 2, padding: int = 1,
           impl: str = "xla") -> jax.Array:
    """torch Conv2d(k=4, s=2, p=1, bias=False) in NHWC / HWIO.

    Args:
      x: ``(N, H, W, Cin)``, H and W even; its dtype is the compute dtype.
      kernel: ``(4, 4, Cin, Cout)`` (see `twister_jax.port.conv_kernel`); cast to ``x.dtype``.
      stride, padding: must be 2 and 1.
      impl: ``"xla"``, ``"matmul"``, ``"hybrid"`` or ``"auto"`` (module docstring).

    Returns:
      ``(N, H/2, W/2, Cout)`` in ``x.dtype``.
    """
    _check(x, kernel, stride, padding)
    return {"xla": _conv_xla, "matmul": _conv_matmul, "hybrid": _conv_hybrid}[_resolve(impl)](x, kernel)


def conv_transpose2d(x: jax.Array, kernel: jax.Array, *, stride: int = 2, padding: int = 1,
                     impl: str = "xla") -> jax.Array:
    """torch ConvTranspose2d(k=4, s=2, p=1, bias=False) in NHWC; output size 2x the input.

    Args:
      x: ``(N, H, W, Cin)``; its dtype is the compute dtype.
      kernel: ``(4, 4, Cin, Cout)`` = torch weight ``.transpose(2, 3, 0, 1)`` (`twister_jax.port.conv_transpose_kernel`,
        not flipped); cast to ``x.dtype``.
      stride, padding: must be 2 and 1.
      impl: ``"xla"``, ``"matmul"``, ``"hybrid"`` or ``"auto"`` (module docstring).

    Returns:
      ``(N, 2H, 2W, Cout)`` in ``x.dtype``.
    """
    _check(x, kernel, stride, padding)
    impls = {"xla": _conv_transpose_xla, "matmul": _conv_transpose_matmul, "hybrid": _conv_transpose_hybrid}
    return impls[_resolve(impl)](x, kernel)


# -------------------------------------------------------------------------------------- matmul --
#
# With P = `_im2col` (a linear map taking (N, 2h, 2w, C) to the (N, h, w, 16 C) patches of the 4x4/2/pad-1
# windows, feature order (a, b, c)) and its adjoint P^T = `_col2im` (overlap-add):
#   conv2d:            y = P(x) @ K            dx = P^T(dy @ K^T)      dK = P(x)^T @ dy
#   conv_transpose2d:  y = P^T(x @ K')         dx = P(dy) @ K'^T       dK' = x^T @ P(dy)
# with K = kernel.reshape(16 Cin, Cout) and K' = kernel as (Cin, 16 Cout), both in (a, b, channel) order.
# Both maps use the space-to-depth view of the padded image: row 2j + a of the padded image, a = 2 da + pa,
# is row j + da, phase pa. So a 4x4/2 window is a 2x2/1 window over (h + 1) x (w + 1) blocks of 2x2 pixels,
# and each map is four shifted block copies (no strided gathers, no scatters).


def _dot(a, b, contract):
    """``a . b`` contracting a's axes `contract[0]` with b's `contract[1]`, accumulated in float32."""
    return lax.dot_general(a, b, (contract, ((), ())), preferred_element_type=jnp.float32)


def _im2col(x):
    """(N, 2h, 2w, C) -> (N, h, w, 16 C): zero-pad 1, the 4x4 stride-2 patches, features (a, b, c)."""
    n, hh, ww, c = x.shape
    h, w = hh // 2, ww // 2
    xs = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(n, h + 1, 2, w + 1, 2, c)
    rows = []
    for da in range(2):
        cols = [xs[:, da:da + h, :, db:db + w, :, :] for db in range(2)]  # (N, h, pa, w, pb, C)
        rows.append(jnp.stack(cols, axis=4))                              # (N, h, pa, w, db, pb, C)
    p = jnp.stack(rows, axis=2)                                           # (N, h, da, pa, w, db, pb, C)
    return p.transpose(0, 1, 4, 2, 3, 5, 6, 7).reshape(n, h, w, 16 * c)


def _col2im(cols, c):
    """Adjoint of `_im2col`: (N, h, w, 16 C) -> (N, 2h, 2w, C), overlap-adding the 4x4 contributions.

    Every output pixel receives exactly four contributions (one per (da, db) block shift).
    """
    n, h, w, _ = cols.shape
    cols = cols.reshape(n, h, w, 2, 2, 2, 2, c)                           # (N, h, w, da, pa, db, pb, C)
    out = None
    for da in range(2):
        for db in range(2):
            blk = cols[:, :, :, da, :, db, :, :].transpose(0, 1, 3, 2, 4, 5)  # (N, h, pa, w, pb, C)
            blk = jnp.pad(blk, ((0, 0), (da, 1 - da), (0, 0), (db, 1 - db), (0, 0), (0, 0)))
            out = blk if out is None else out + blk
    return out.reshape(n, 2 * h + 2, 2 * w + 2, c)[:, 1:-1, 1:-1, :]


@jax.custom_vjp
def _conv_matmul(x, k):
    return _conv_matmul_fwd(x, k)[0]


def _conv_matmul_fwd(x, k):
    dt = x.dtype
    kmat = k.astype(dt).reshape(-1, k.shape[-1])                          # (16 Cin, Cout)
    y = _dot(_im2col(x), kmat, ((3,), (0,))).astype(dt)
    return y, (x, k)


def _conv_matmul_bwd(res, dy):
    x, k = res
    dt = x.dtype
    dy = dy.astype(dt)
    kmat = k.astype(dt).reshape(-1, k.shape[-1])
    dx = _col2im(_dot(dy, kmat, ((3,), (1,))), x.shape[-1]).astype(dt)
    dk = _dot(_im2col(x), dy, ((0, 1, 2), (0, 1, 2))).reshape(k.shape).astype(k.dtype)
    return dx, dk


_conv_matmul.defvjp(_conv_matmul_fwd, _conv_matmul_bwd)


def _kt_mat(k, dt):
    """(4, 4, Cin, Cout) -> (Cin, 16 Cout) in (a, b, o) order."""
    kh, kw, ci, co = k.shape
    return k.astype(dt).transpose(2, 0, 1, 3).reshape(ci, kh * kw * co)


@jax.custom_vjp
def _conv_transpose_matmul(x, k):
    return _conv_transpose_matmul_fwd(x, k)[0]


def _conv_transpose_matmul_fwd(x, k):
    dt = x.dtype
    y = _col2im(_dot(x, _kt_mat(k, dt), ((3,), (0,))), k.shape[-1]).astype(dt)
    return y, (x, k)


def _conv_transpose_matmul_bwd(res, dy):
    x, k = res
    dt = x.dtype
    pd = _im2col(dy.astype(dt))                                           # (N, H, W, 16 Cout)
    dx = _dot(pd, _kt_mat(k, dt), ((3,), (1,))).astype(dt)
    dk = _dot(x, pd, ((0, 1, 2), (0, 1, 2)))                              # (Cin, 16 Cout)
    kh, kw, ci, co = k.shape
    dk = dk.reshape(ci, kh, kw, co).transpose(1, 2, 0, 3).astype(k.dtype)
    return dx, dk


_conv_transpose_matmul.defvjp(_conv_transpose_matmul_fwd, _conv_transpose_matmul_bwd)


# -------------------------------------------------------------------------------------- hybrid --
#
# Of the three convolutions in a conv layer's forward + backward pass, XLA on CPU is fast at the two
# "forward-style" ones (y, and dx, the adjoint op: conv2d <-> conv_transpose2d with the kernel's in/out axes
# swapped) and very slow at the kernel gradient. "hybrid" keeps XLA for those two and computes only the
# kernel gradient as patches + one matmul (same formulas as "matmul").


@jax.custom_vjp
def _conv_hybrid(x, k):
    return _conv_xla(x, k)


def _conv_hybrid_fwd(x, k):
    return _conv_xla(x, k), (x, k)


def _conv_hybrid_bwd(res, dy):
    x, k = res
    dy = dy.astype(x.dtype)
    dx = _conv_transpose_xla(dy, k.transpose(0, 1, 3, 2))
    dk = _dot(_im2col(x), dy, ((0, 1, 2), (0, 1, 2))).reshape(k.shape).astype(k.dtype)
    return dx, dk


_conv_hybrid.defvjp(_conv_hybrid_fwd, _conv_hybrid_bwd)


@jax.custom_vjp
def _conv_transpose_hybrid(x, k):
    return _conv_transpose_xla(x, k)


def _conv_transpose_hybrid_fwd(x, k):
    return _conv_transpose_xla(x, k), (x, k)


def _conv_transpose_hybrid_bwd(res, dy):
    x, k = res
    dy = dy.astype(x.dtype)
    dx = _conv_xla(dy, k.transpose(0, 1, 3, 2))
    dk = _dot(x, _im2col(dy), ((0, 1, 2), (0, 1, 2)))                     # (Cin, 16 Cout)
    kh, kw, ci, co = k.shape
    return dx, dk.reshape(ci, kh, kw, co).transpose(1, 2, 0, 3).astype(k.dtype)


_conv_transpose_hybrid.defvjp(_conv_transpose_hybrid_fwd, _conv_transpose_hybrid_bwd)
