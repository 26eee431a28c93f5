"""The three optimiser chains and the slow-critic EMA (docs/original.md §6.1, §5.8)."""
import jax.numpy as jnp
import numpy as np
import pytest

from config_utils import get_config
from twister_jax import optim


def _adam_reference(grads, clip, lr, eps, steps):
    """Hand-written torch-style Adam after global-norm clipping (clip / norm, optax's factor)."""
    m = np.zeros_like(grads[0])
    v = np.zeros_like(grads[0])
    updates = []
    for t, g in enumerate(grads, start=1):
        norm = np.sqrt(np.sum(g * g))
        g = g * min(1.0, clip / norm)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        m_hat, v_hat = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
        updates.append(-lr * m_hat / (np.sqrt(v_hat) + eps))
    return updates


@pytest.mark.parametrize("clip", [100.0, 0.5])
def test_chain_is_clipped_adam(clip):
    """Two leaves: the clip uses the global norm over both, then per-element Adam."""
    lr, eps = 3e-5, 1e-5
    tx = optim.make_optimizer(lr, eps, clip)
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(5,)).astype(np.float64) * s for s in (1.0, 3.0, 0.1)]
    params = {"a": jnp.zeros(2, jnp.float32), "b": jnp.zeros(3, jnp.float32)}
    state = tx.init(params)
    expected = _adam_reference(grads, clip, lr, eps, len(grads))
    for g, exp in zip(grads, expected):
        g32 = jnp.asarray(g, jnp.float32)
        upd, state = tx.update({"a": g32[:2], "b": g32[2:]}, state, params)
        got = np.concatenate([np.asarray(upd["a"]), np.asarray(upd["b"])])
        np.testing.assert_allclose(got, exp, rtol=2e-5, atol=1e-12)


@pytest.mark.parametrize("variant", ["atari", "dmc"])
def test_make_optimizers_reads_config(variant):
    config = get_config(variant, {"atari": "pong", "dmc": "walker_walk"}[variant])
    txs = optim.make_optimizers(config)
    assert set(txs) == {"world_model", "actor", "critic"}
    # one step on a big gradient: the update of Adam's first step is -lr * g_hat / (|g_hat| + eps)
    for group, tx in txs.items():
        c = config.optim[group]
        params = jnp.zeros(3)
        g = jnp.array([1e6, -2e6, 0.0])
        upd, _ = tx.update(g, tx.init(params), params)
        norm = float(jnp.linalg.norm(g))
        g_hat = np.asarray(g) * c.clip / norm
        expected = -c.lr * g_hat / (np.abs(g_hat) + c.eps)
        np.testing.assert_allclose(np.asarray(upd), expected, rtol=1e-5, atol=1e-12)


def test_optimizer_values_are_the_spec():
    config = get_config("atari", "pong")
    assert dict(config.optim.world_model) == dict(lr=1e-4, eps=1e-8, clip=1000.0)
    assert dict(config.optim.actor) == dict(lr=3e-5, eps=1e-5, clip=100.0)
    assert dict(config.optim.critic) == dict(lr=3e-5, eps=1e-5, clip=100.0)


def test_slow_critic_update():
    slow = {"w": jnp.array([1.0, 2.0]), "b": {"x": jnp.array(0.0)}}
    online = {"w": jnp.array([3.0, 2.0]), "b": {"x": jnp.array(1.0)}}
    new = optim.slow_critic_update(slow, online, 0.02)
    np.testing.assert_allclose(np.asarray(new["w"]), [0.98 * 1 + 0.02 * 3, 2.0], rtol=1e-6)
    np.testing.assert_allclose(float(new["b"]["x"]), 0.02, rtol=1e-6)
    # repeated updates converge to the online critic with time constant 1/rate
    s = slow
    for _ in range(50):
        s = optim.slow_critic_update(s, online, 0.02)
    np.testing.assert_allclose(np.asarray(s["w"])[0], 3.0 - 2.0 * 0.98 ** 50, rtol=1e-5)
