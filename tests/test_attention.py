"""Unit tests of the relative-position attention and its masks (docs/original.md §3.6.4, §3.6.5)."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fixture_builders import rel_to_abs
from twister_jax.networks import attention, transformer


def _brute_episode(query_flags, cache_flags):
    b, t = query_flags.shape
    th = cache_flags.shape[1]
    out = np.ones((b, 1, t, th + t), bool)
    for n in range(b):
        for i in range(t):
            flags = list(cache_flags[n]) + [query_flags[n, k] if k <= i else 0 for k in range(t)]
            for j in range(th + t):
                if any(flags[q] for q in range(j + 1, th + t)):
                    out[n, 0, i, j] = False
    return out


def test_context_mask_brute_force():
    for t, th, left in [(10, 0, 8), (1, 8, 8), (3, 5, 4), (6, 2, 1)]:
        m = np.asarray(attention.context_mask(t, th, left))
        assert m.shape == (1, 1, t, th + t)
        for i in range(t):
            for j in range(th + t):
                assert m[0, 0, i, j] == (th + i - left <= j <= th + i)


def test_episode_mask_brute_force():
    rng = np.random.default_rng(0)
    for th, t in [(0, 9), (8, 1), (5, 3)]:
        q = rng.random((4, t)) < 0.3
        c = rng.random((4, th)) < 0.3
        np.testing.assert_array_equal(np.asarray(attention.episode_mask(q, c if th else None)),
                                      _brute_episode(q, c))


def test_training_mask_never_crosses_a_reset():
    rng = np.random.default_rng(1)
    firsts = rng.random((8, 12)) < 0.25
    m = np.asarray(attention.combine_masks(attention.context_mask(12, 0, 8), attention.episode_mask(firsts)))
    for b, i, j in zip(*np.nonzero(m[:, 0])):
        assert j <= i and not firsts[b, j + 1:i + 1].any()
    # and everything after the latest reset inside the context stays visible
    for b in range(8):
        for i in range(12):
            starts = [k for k in range(i + 1) if firsts[b, k]]
            lo = max(starts[-1] if starts else 0, i - 8)
            assert m[b, 0, i, lo:i + 1].all()


def test_gating_switch():
    ctx = attention.context_mask(1, 8, 8)
    ep = attention.episode_mask(np.zeros((2, 1)), np.eye(2, 8, 5))
    np.testing.assert_array_equal(np.asarray(attention.combine_masks(ctx, ep, False)), np.ones((2, 1, 1, 9), bool))
    gated = np.asarray(attention.combine_masks(ctx, ep, jnp.asarray(True)))
    assert not gated[0, 0, 0, :5].any() and gated[0, 0, 0, 5:].all()
    valid = np.zeros((2, 9), bool)
    valid[:, -3:] = True
    np.testing.assert_array_equal(np.asarray(attention.combine_masks(ctx, ep, False, valid))[:, 0, 0], valid)


def _naive_attention(layer, x, mask, ck, cv):
    """Per-pair loop over ``E(p - k)`` in NumPy float64."""
    p = {n: np.asarray(getattr(layer, n).kernel[...], np.float64) for n in ("query", "key", "value", "output", "pos")}
    bias = {n: np.asarray(getattr(layer, n).bias[...], np.float64) for n in p}
    u, v = np.asarray(layer.u[...], np.float64), np.asarray(layer.v[...], np.float64)
    x = np.asarray(x, np.float64)
    q = x @ p["query"] + bias["query"]
    k = np.concatenate([ck, x @ p["key"] + bias["key"]], 1)
    val = np.concatenate([cv, x @ p["value"] + bias["value"]], 1)
    b, t, d = x.shape
    n, hd = k.shape[1], d // layer.heads
    th = n - t
    out = np.zeros((b, t, d))
    for bb in range(b):
        for i in range(t):
            for h in range(layer.heads):
                sl = slice(h * hd, (h + 1) * hd)
                s = np.full(n, -np.inf)
                for j in range(n):
                    if mask[bb, 0, i, j]:
                        e = attention.sinusoid(np.array([th + i - j]), d)[0].astype(np.float64) @ p["pos"] + bias["pos"]
                        s[j] = ((q[bb, i, sl] + u[sl]) @ k[bb, j, sl] + (q[bb, i, sl] + v[sl]) @ e[sl]) / np.sqrt(hd)
                w = np.exp(s - s.max())
                w /= w.sum()
                out[bb, i, sl] = w @ val[bb, :, sl]
    return out @ p["output"] + bias["output"]


def test_attention_matches_naive_gather():
    layer = attention.RelPosSelfAttention(16, 2, rngs=nnx.Rngs(0))
    layer.u[...] = jax.random.normal(jax.random.key(1), (16,))
    layer.v[...] = jax.random.normal(jax.random.key(2), (16,))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 16)).astype(np.float32)
    ck = rng.normal(size=(2, 4, 16)).astype(np.float32)
    cv = rng.normal(size=(2, 4, 16)).astype(np.float32)
    mask = np.asarray(attention.combine_masks(attention.context_mask(3, 4, 3),
                                              attention.episode_mask(np.array([[0, 1, 0], [0, 0, 0]]),
                                                                     np.array([[0, 1, 0, 0], [0, 0, 0, 0]]))))
    out, (k, v) = layer(x, mask, ck, cv)
    assert k.shape == v.shape == (2, 7, 16)
    np.testing.assert_allclose(np.asarray(out), _naive_attention(layer, x, mask, ck, cv), atol=1e-5, rtol=1e-5)


def test_skew_equals_gather():
    rng = np.random.default_rng(0)
    th, t = 4, 3
    x = rng.normal(size=(2, 2, t, th + t)).astype(np.float32)
    out = np.asarray(rel_to_abs(x, th))
    for i in range(t):
        for j in range(th + i + 1):
            np.testing.assert_array_equal(out[..., i, j], x[..., i, th + t - 1 - (th + i - j)])


def test_dropout_keys_and_determinism():
    blk = transformer.TransformerBlock(16, 2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 5, 16))
    mask = attention.context_mask(5, 0, 8)
    det, _ = blk(x, mask)
    a, _ = blk(x, mask, key=jax.random.key(3), deterministic=False)
    b, _ = blk(x, mask, key=jax.random.key(3), deterministic=False)
    c, _ = blk(x, mask, key=jax.random.key(4), deterministic=False)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(a, c) and not np.allclose(a, det)
    with pytest.raises(ValueError):
        blk(x, mask, deterministic=False)


def test_bfloat16_block_close_to_float32():
    f32 = transformer.TransformerBlock(16, 2, rngs=nnx.Rngs(0))
    bf16 = transformer.TransformerBlock(16, 2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 5, 16))
    mask = attention.context_mask(5, 0, 8)
    ref, (k32, _) = f32(x, mask)
    out, (k16, _) = bf16(x, mask)
    assert out.dtype == jnp.float32 and k16.dtype == jnp.bfloat16
    assert float(jnp.max(jnp.abs(out - ref))) < 0.1


class MaskVariantsTest(chex.TestCase):
    """The mask builders are pure: same result under jit and without."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_episode_and_combined(self):
        rng = np.random.default_rng(3)
        q = (rng.random((3, 1)) < 0.5).astype(np.float32)
        c = (rng.random((3, 8)) < 0.3).astype(np.float32)
        valid = rng.random((3, 9)) < 0.8

        def build(q, c, gate, valid):
            return attention.combine_masks(attention.context_mask(1, 8, 8), attention.episode_mask(q, c), gate, valid)
        got = np.asarray(self.variant(build)(q, c, jnp.asarray(True), valid))
        np.testing.assert_array_equal(got, _brute_episode(q > 0, c > 0) & valid[:, None, None, :])
