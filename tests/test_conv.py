"""twister_jax.networks.conv: both impls equal torch Conv2d / ConvTranspose2d(k=4, s=2, p=1) semantics.

The reference is an explicit NumPy loop written from the torch definitions (float64), independent of both
implementations: Conv2d gathers ``xpad[2y + a, 2x + b]``; ConvTranspose2d scatters input pixel (iy, ix)
to output ``(2 iy - 1 + a, 2 ix - 1 + b)``. Gradients are checked on a random linear functional
``sum(f(x, k) * c)``, whose exact gradients are again NumPy loops (the adjoint of each op).
"""
import numpy as np
import pytest

import jax
import jax.numpy as jnp

from twister_jax import port
from twister_jax.networks import conv

IMPLS = conv.IMPLS
# (N, H, W, Cin, Cout): batch sizes 1-3, channel counts including the encoder's 3 inputs and decoder's 3 outputs.
SHAPES = [(1, 4, 4, 3, 2), (2, 8, 8, 3, 5), (3, 4, 6, 7, 1)]


def _ref_conv(x, k):
    n, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h // 2, w // 2, k.shape[3]))
    for y in range(h // 2):
        for xx in range(w // 2):
            out[:, y, xx] = np.einsum("nabi,abio->no", xp[:, 2 * y:2 * y + 4, 2 * xx:2 * xx + 4], k)
    return out


def _ref_conv_transpose(x, k):
    n, h, w, _ = x.shape
    out = np.zeros((n, 2 * h + 2, 2 * w + 2, k.shape[3]))  # padded by 1; torch padding=1 crops it
    for iy in range(h):
        for ix in range(w):
            out[:, 2 * iy:2 * iy + 4, 2 * ix:2 * ix + 4] += np.einsum("ni,abio->nabo", x[:, iy, ix], k)
    return out[:, 1:-1, 1:-1]


def _ref_grads(op, x, k, c):
    """Exact gradients of sum(op(x, k) * c): both ops are bilinear, so use the NumPy references' adjoints."""
    if op == "conv":
        # d/dx: conv^T = conv_transpose with (in, out) swapped; d/dk: correlate padded x with c.
        dx = _ref_conv_transpose(c, k.transpose(0, 1, 3, 2))
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        ho, wo = c.shape[1:3]
        dk = np.zeros(k.shape)
        for a in range(4):
            for b in range(4):
                dk[a, b] = np.einsum("nyxi,nyxo->io", xp[:, a:a + 2 * ho:2, b:b + 2 * wo:2], c)
    else:
        dx = _ref_conv(c, k.transpose(0, 1, 3, 2))
        cp = np.pad(c, ((0, 0), (1, 1), (1, 1), (0, 0)))
        h, w = x.shape[1:3]
        dk = np.zeros(k.shape)
        for a in range(4):
            for b in range(4):
                dk[a, b] = np.einsum("nyxi,nyxo->io", x, cp[:, a:a + 2 * h:2, b:b + 2 * w:2])
    return dx, dk


OPS = {"conv": (conv.conv2d, _ref_conv), "conv_transpose": (conv.conv_transpose2d, _ref_conv_transpose)}


def _data(shape, seed):
    n, h, w, ci, co = shape
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, h, w, ci)), rng.normal(size=(4, 4, ci, co)) * 0.3, rng


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_grads_match_reference_float32(op, impl, shape):
    fn, ref = OPS[op]
    x, k, rng = _data(shape, 0)
    want = ref(x, k)
    c = rng.normal(size=want.shape)
    xj, kj, cj = (jnp.asarray(a, jnp.float32) for a in (x, k, c))

    got = jax.jit(lambda a, b: fn(a, b, impl=impl))(xj, kj)
    assert got.shape == want.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)

    loss = lambda a, b: jnp.sum(fn(a, b, impl=impl) * cj)
    for jit in (True, False) if shape == SHAPES[0] else (True,):  # eager dispatch is slow: one shape only
        g = jax.grad(loss, (0, 1))
        dx, dk = (jax.jit(g) if jit else g)(xj, kj)
        want_dx, want_dk = _ref_grads(op, x, k, c)
        np.testing.assert_allclose(np.asarray(dx), want_dx, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(dk), want_dk, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("op", OPS)
def test_impls_agree_with_each_other(op):
    fn, _ = OPS[op]
    x, k, rng = _data((2, 8, 8, 16, 8), 1)
    xj, kj = jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)
    cj = jnp.asarray(rng.normal(size=fn(xj, kj).shape), jnp.float32)
    loss = lambda a, b, impl: jnp.sum(fn(a, b, impl=impl) * cj)
    both = jax.jit(lambda a, b, impl: (fn(a, b, impl=impl), *jax.grad(loss, (0, 1))(a, b, impl)), static_argnums=2)
    outs = {impl: both(xj, kj, impl) for impl in IMPLS}
    for impl in IMPLS[1:]:
        for a, b in zip(outs["xla"], outs[impl]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_bfloat16_compute_float32_params(op, impl):
    """bf16 activations with a float32 kernel: output and dx in bf16, dk in float32, close to float32 values."""
    fn, ref = OPS[op]
    x, k, rng = _data((2, 8, 8, 8, 4), 2)
    want = ref(x, k)
    c = rng.normal(size=want.shape)
    xb = jnp.asarray(x, jnp.bfloat16)
    kj, cj = jnp.asarray(k, jnp.float32), jnp.asarray(c, jnp.float32)

    got = fn(xb, kj, impl=impl)
    assert got.dtype == jnp.bfloat16
    scale = np.abs(want).max()
    np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=0.03 * scale)

    dx, dk = jax.jit(jax.grad(lambda a, b: jnp.sum(fn(a, b, impl=impl).astype(jnp.float32) * cj), (0, 1)))(xb, kj)
    assert dx.dtype == jnp.bfloat16 and dk.dtype == jnp.float32
    want_dx, want_dk = _ref_grads(op, x, k, c)
    np.testing.assert_allclose(np.asarray(dx, np.float32), want_dx, atol=0.03 * np.abs(want_dx).max())
    np.testing.assert_allclose(np.asarray(dk), want_dk, atol=0.03 * np.abs(want_dk).max())


def test_torch_kernel_converters():
    """Converted torch weights reproduce the torch index conventions of the references."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 4, 4, 3))
    w_conv = rng.normal(size=(5, 3, 4, 4))       # torch Conv2d (out, in, kh, kw)
    w_convt = rng.normal(size=(3, 5, 4, 4))      # torch ConvTranspose2d (in, out, kh, kw)
    k = port.conv_kernel(w_conv)
    assert k.shape == (4, 4, 3, 5) and k[1, 2, 0, 4] == w_conv[4, 0, 1, 2]
    kt = port.conv_transpose_kernel(w_convt)
    assert kt.shape == (4, 4, 3, 5) and kt[1, 2, 0, 4] == w_convt[0, 4, 1, 2]
    # Torch Conv2d, first output pixel, written directly with the torch weight: taps a, b >= 1 (pad 1).
    y = conv.conv2d(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32))
    direct = np.einsum("abi,oiab->o", x[0, :3, :3], w_conv[:, :, 1:, 1:])
    np.testing.assert_allclose(np.asarray(y[0, 0, 0]), direct, rtol=1e-5, atol=1e-5)
    # Torch ConvTranspose2d, output pixel (0, 0) = input (0, 0) through tap (1, 1) (+ nothing else).
    yt = conv.conv_transpose2d(jnp.asarray(x, jnp.float32), jnp.asarray(kt, jnp.float32))
    np.testing.assert_allclose(np.asarray(yt[0, 0, 0]), x[0, 0, 0] @ w_convt[:, :, 1, 1], rtol=1e-5, atol=1e-5)


def test_auto_and_errors():
    x = jnp.zeros((1, 4, 4, 2))
    k = jnp.zeros((4, 4, 2, 3))
    assert conv.conv2d(x, k, impl="auto").shape == (1, 2, 2, 3)
    assert conv.conv_transpose2d(x, k, impl="auto").shape == (1, 8, 8, 3)
    with pytest.raises(ValueError, match="unknown conv impl 'fast'"):
        conv.conv2d(x, k, impl="fast")
    with pytest.raises(ValueError, match="stride 2, padding 1"):
        conv.conv2d(x, k, stride=1)
    with pytest.raises(ValueError, match="Cin"):
        conv.conv2d(x, jnp.zeros((4, 4, 3, 3)))


@pytest.mark.parametrize("impl", IMPLS)
def test_against_original_fixtures(impl):
    """One encoder conv and the decoder's last transposed conv against the recorded PyTorch outputs.

    Uses the `encoder`/`decoder` fixtures (feature maps NCHW, recorded after LayerNorm + SiLU; the decoder's
    last layer has a bias and no norm). Skipped where the fixture folder is absent.
    """
    from conftest import golden_dir

    enc, dec = golden_dir() / "encoder.npz", golden_dir() / "decoder.npz"
    if not (enc.exists() and dec.exists()):
        pytest.skip(f"no encoder/decoder fixtures in {golden_dir()}")
    nhwc = lambda a: jnp.asarray(a.transpose(0, 2, 3, 1), jnp.float32)

    d = np.load(dec)
    k = port.conv_transpose_kernel(d["params/decoder_network.cnn.layers.3.0.weight"])
    y = conv.conv_transpose2d(nhwc(d["outputs/cnn_layer2"]), jnp.asarray(k), impl=impl)
    y = y + d["params/decoder_network.cnn.layers.3.0.bias"]
    np.testing.assert_allclose(np.asarray(y), np.asarray(nhwc(d["outputs/cnn_layer3"])), rtol=1e-5, atol=1e-5)

    e = np.load(enc)
    k = port.conv_kernel(e["params/encoder_network.cnn.layers.1.0.weight"])
    y = np.asarray(conv.conv2d(nhwc(e["outputs/cnn_layer0"]), jnp.asarray(k), impl=impl), np.float64)
    y = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-3)
    y = y * e["params/encoder_network.cnn.layers.1.1.weight"] + e["params/encoder_network.cnn.layers.1.1.bias"]
    y = y / (1 + np.exp(-y))
    np.testing.assert_allclose(y, np.asarray(nhwc(e["outputs/cnn_layer1"])), rtol=1e-5, atol=1e-5)
