"""4x4 stride-2 convolutions of the encoder and decoder (spec 3.3, 3.5), in two implementations.

Layouts (both ops): activations NHWC, kernels HWIO ``(kh, kw, Cin, Cout)``, no bias.

* `conv2d(x, k)` == torch ``Conv2d(Cin, Cout, 4, stride=2, padding=1, bias=False)``:
  ``out[n, y, x, o] = sum_{a, b, i} xpad[n, 2y + a, 2x + b, i] * k[a, b, i, o]`` with ``xpad`` the
  input zero-padded by 1 on every side; ``(N, H, W, Cin) -> (N, H/2, W/2, Cout)``.
  Kernel from the torch weight ``W (Cout, Cin, kh, kw)``: `torch_conv_kernel` = ``W.transpose(2, 3, 1, 0)``.
* `conv_transpose2d(x, k)` == torch ``ConvTranspose2d(Cin, Cout, 4, stride=2, padding=1, bias=False)``
  (the gradient of `conv2d` w.r.t. its input, with Cin/Cout swapped): every input pixel scatters
  ``x[n, iy, ix, :] @ k[a, b]`` to output pixel ``(2 iy - 1 + a, 2 ix - 1 + b)`` (dropped if outside);
  ``(N, H, W, Cin) -> (N, 2H, 2W, Cout)``. The kernel is NOT spatially flipped:
  `torch_conv_transpose_kernel` = ``W.transpose(2, 3, 0, 1)`` from the torch weight ``W (Cin, Cout, kh, kw)``,
  i.e. ``k[a, b, i, o] = W[i, o, a, b]``. (Flax ``nn.ConvTranspose(transpose_kernel=False)`` would need the
  flipped kernel ``k[::-1, ::-1]``; spec 3.5.)

Implementations (``impl=``):

* ``"xla"``: `lax.conv_general_dilated`. Best on GPU/TPU.
* ``"matmul"``: patches (im2col by strided slices) + one matmul, with a hand-written `jax.custom_vjp`.
  XLA on CPU computes convolution kernel gradients very slowly (STYLE.md section 3); this is the fast
  CPU path.
* ``"auto"``: ``"matmul"`` when ``jax.default_backend() == "cpu"``, else ``"xla"``.

Dtypes: the computation runs in the dtype of ``x`` (the compute dtype, e.g. bfloat16); the kernel is cast
to it. Products are accumulated in float32 (``preferred_element_type``) and the result is cast back to
``x.dtype``. Gradients come back in the dtypes of the primal inputs.

Only kernel 4, stride 2, padding 1 is supported (the only case the model uses); other values raise.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def torch_conv_kernel(w) -> np.ndarray:
    """torch Conv2d weight ``(Cout, Cin, kh, kw)`` -> HWIO kernel ``(kh, kw, Cin, Cout)`` for `conv2d`."""
    return np.asarray(w).transpose(2, 3, 1, 0)


def torch_conv_transpose_kernel(w) -> np.ndarray:
    """torch ConvTranspose2d weight ``(Cin, Cout, kh, kw)`` -> ``(kh, kw, Cin, Cout)`` for `conv_transpose2d`.

    No spatial flip: ``k[a, b, i, o] = W[i, o, a, b]``.
    """
    return np.asarray(w).transpose(2, 3, 0, 1)


def _check(x, kernel, stride, padding):
    if stride != 2 or padding != 1 or kernel.shape[:2] != (4, 4):
        raise ValueError(f"only kernel 4x4, stride 2, padding 1 is implemented; got kernel "
                         f"{kernel.shape}, stride {stride}, padding {padding}")
    if x.ndim != 4 or kernel.ndim != 4 or x.shape[-1] != kernel.shape[2]:
        raise ValueError(f"expected x (N, H, W, Cin) and kernel (4, 4, Cin, Cout); got {x.shape}, {kernel.shape}")


def _resolve(impl: str) -> str:
    if impl == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    if impl not in ("xla", "matmul"):
        raise ValueError(f"unknown conv impl {impl!r}; allowed: 'xla', 'matmul', 'auto'")
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
      kernel: ``(4, 4, Cin, Cout)`` (see `torch_conv_kernel`); cast to ``x.dtype``.
      stride, padding: must be 2 and 1.
      impl: ``"xla"``, ``"matmul"`` or ``"auto"`` (module docstring).

    Returns:
      ``(N, H/2, W/2, Cout)`` in ``x.dtype``.
    """
    _check(x, kernel, stride, padding)
    if _resolve(impl) == "matmul":
        return _conv_matmul(x, kernel)
    return _conv_xla(x, kernel)


def conv_transpose2d(x: jax.Array, kernel: jax.Array, *, stride: int = 2, padding: int = 1,
                     impl: str = "xla") -> jax.Array:
    """torch ConvTranspose2d(k=4, s=2, p=1, bias=False) in NHWC; output size 2x the input.

    Args:
      x: ``(N, H, W, Cin)``; its dtype is the compute dtype.
      kernel: ``(4, 4, Cin, Cout)`` = torch weight ``.transpose(2, 3, 0, 1)`` (`torch_conv_transpose_kernel`,
        not flipped); cast to ``x.dtype``.
      stride, padding: must be 2 and 1.
      impl: ``"xla"``, ``"matmul"`` or ``"auto"`` (module docstring).

    Returns:
      ``(N, 2H, 2W, Cout)`` in ``x.dtype``.
    """
    _check(x, kernel, stride, padding)
    if _resolve(impl) == "matmul":
        return _conv_transpose_matmul(x, kernel)
    return _conv_transpose_xla(x, kernel)


def _conv_matmul(x, k):  # replaced below
    raise NotImplementedError("impl='matmul' is not written yet; use impl='xla'")


def _conv_transpose_matmul(x, k):  # replaced below
    raise NotImplementedError("impl='matmul' is not written yet; use impl='xla'")
