"""Initialisers (docs/original.md §6.4), torch maps and bfloat16 compute of the world-model building blocks."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from twister_jax import port
from twister_jax.networks import contrastive, decoder, encoder, heads, layers


def test_initialiser_statistics():
    k = jax.random.key(0)
    w = np.asarray(layers.dreamerv3_normal(k, (256, 128)))
    s0 = 1.1368 * math.sqrt(2 / 384)
    assert np.abs(w).max() <= 2 * s0 + 1e-7
    assert w.std() == pytest.approx(math.sqrt(2 / 384), rel=0.03)
    c = np.asarray(layers.dreamerv3_normal(k, (4, 4, 8, 16)))  # conv fans include 4x4
    assert np.abs(c).max() <= 2 * 1.1368 * math.sqrt(2 / (16 * 24)) + 1e-7
    x = np.asarray(layers.xavier_uniform(k, (100, 50)))
    b = math.sqrt(6 / 150)
    assert np.abs(x).max() <= b and np.abs(x).max() > 0.95 * b
    t = np.asarray(layers.torch_default_uniform(64)(k, (64, 10)))
    assert np.abs(t).max() <= 1 / 8 and np.abs(t).max() > 0.9 / 8


def test_head_inits():
    rngs = nnx.Rngs(0)
    r = heads.MLPHead(12, 255, hidden=16, zero_output=True, rngs=rngs)
    assert not np.any(np.asarray(r.linear_proj.linear.kernel[...]))
    np.testing.assert_array_equal(r(jnp.ones((2, 12))), 0.0)
    c = heads.MLPHead(12, 1, hidden=16, rngs=rngs)
    assert np.any(np.asarray(c.linear_proj.linear.kernel[...]))
    assert not np.any(np.asarray(c.linear_proj.linear.bias[...]))
    assert set(port.torch_map(c)) == {"mlp.layers.0.0.weight", "mlp.layers.0.1.weight", "mlp.layers.0.1.bias",
                                  "mlp.layers.1.0.weight", "mlp.layers.1.1.weight", "mlp.layers.1.1.bias",
                                  "linear_proj.weight", "linear_proj.bias"}


def test_bfloat16_compute_float32_params():
    rngs = nnx.Rngs(0)
    bf = jnp.bfloat16
    enc = encoder.Encoder(dim_cnn=2, stoch=4, discrete=4, dtype=bf, rngs=rngs)
    dec = decoder.Decoder(16, dim_cnn=2, dtype=bf, rngs=rngs)
    head = heads.MLPHead(16, 255, hidden=8, dtype=bf, rngs=rngs)
    con = contrastive.ContrastiveHeads(16, 16, 3, steps=2, hidden=8, dtype=bf, rngs=rngs)
    for m in (enc, dec, head, con):
        leaves = jax.tree.leaves(nnx.state(m, nnx.Param))
        assert all(l.dtype == jnp.float32 for l in leaves)
    img = jnp.zeros((1, 2, 64, 64, 3), jnp.uint8)
    logits = enc(img)
    assert logits.shape == (1, 2, 4, 4) and logits.dtype == jnp.float32
    mean = dec(jnp.zeros((1, 2, 16)))
    assert mean.shape == (1, 2, 64, 64, 3) and mean.dtype == jnp.float32
    assert head(jnp.zeros((3, 16))).dtype == jnp.float32
    assert con.pairs[1].mlp_feats(jnp.zeros((3, 19))).shape == (3, 8)
