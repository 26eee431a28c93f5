"""Returns, normaliser, weights, policy distributions and the actor/critic losses (docs/original.md §5.3-5.8)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from config_utils import get_config
from twister_jax import policy_dist as pdist
from twister_jax.losses import actor_critic as ac


# ------------------------------------------------------------------------------ lambda returns
def test_lambda_returns_hand_computed():
    # one trajectory, H = 3, lambda = 0.5; the third step does not continue
    rewards = jnp.array([[1.0, 2.0, 3.0]])
    values = jnp.array([[10.0, 20.0, 30.0]])
    discounts = jnp.array([[0.9, 0.9, 0.0]])
    ret = np.asarray(ac.lambda_returns(rewards, values, discounts, 0.5))
    r2 = 3.0                                   # 3 + 0 * (...)
    r1 = 2.0 + 0.9 * (0.5 * 20.0 + 0.5 * r2)   # 12.35
    r0 = 1.0 + 0.9 * (0.5 * 10.0 + 0.5 * r1)   # 11.0575
    np.testing.assert_allclose(ret, [[r0, r1, r2]], rtol=1e-6)


def test_lambda_returns_limits_and_bootstrap():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)
    d = np.full((2, 4), 0.9, np.float32)
    # lambda = 0: one-step TD targets r_t + d_t v_t
    np.testing.assert_allclose(ac.lambda_returns(r, v, d, 0.0), r + d * v, rtol=1e-6)
    # lambda = 1: discounted sum of rewards bootstrapped from the given value
    boot = np.array([5.0, -1.0], np.float32)
    mc = np.zeros_like(r)
    nxt = boot
    for t in reversed(range(4)):
        nxt = r[:, t] + d[:, t] * nxt
        mc[:, t] = nxt
    np.testing.assert_allclose(ac.lambda_returns(r, v, d, 1.0, bootstrap=boot), mc, rtol=1e-5)
    # default bootstrap is the last value; a trailing singleton axis passes through
    a = ac.lambda_returns(r[..., None], v[..., None], d[..., None], 0.95)
    b = ac.lambda_returns(r, v, d, 0.95, bootstrap=v[:, -1])
    np.testing.assert_allclose(np.asarray(a)[..., 0], b, rtol=1e-6)


# ---------------------------------------------------------------------------------- weights
def test_discounts_and_weights():
    c = jnp.array([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    disc, w = ac.discounts_and_weights(c, 0.5)
    np.testing.assert_allclose(disc, [[0.5, 0.0, 0.5], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(w, [[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # w_i = gamma^i c_0..c_i
    c = jnp.ones((1, 5))
    _, w = ac.discounts_and_weights(c, 0.997)
    np.testing.assert_allclose(w[0], 0.997 ** np.arange(5), rtol=1e-6)


# ------------------------------------------------------------------------------- normaliser
def test_return_normaliser_ema_and_unit_scale():
    state = ac.init_return_norm()
    assert float(state.low) == 0.0 and float(state.high) == 0.0
    returns = jnp.linspace(0.0, 0.5, 101)       # spread 0.5 < 1
    state, (lo, hi) = ac.update_return_norm(state, returns, decay=0.99, low_q=0.05, high_q=0.95)
    np.testing.assert_allclose([float(lo), float(hi)], [0.025, 0.475], rtol=1e-5)
    np.testing.assert_allclose([float(state.low), float(state.high)], [0.00025, 0.00475], rtol=1e-5)
    offset, invscale = ac.return_norm_offset_invscale(state, 1.0)
    assert float(offset) == float(state.low)
    assert float(invscale) == 1.0             # exactly 1 while the EMA'd spread is below 1
    # converges to the batch quantiles (time constant 100 updates), still scale 1
    state = jax.jit(lambda st: jax.lax.fori_loop(
        0, 2000, lambda i, s: ac.update_return_norm(s, returns)[0], st))(state)
    np.testing.assert_allclose([float(state.low), float(state.high)], [0.025, 0.475], rtol=1e-4)
    assert float(ac.return_norm_offset_invscale(state)[1]) == 1.0


def test_return_normaliser_wide_spread_and_linear_quantile():
    x = jnp.arange(11.0) * 10.0                    # 0..100
    lo, hi = ac.return_quantiles(x, 0.05, 0.95)
    # linear interpolation: position q*(n-1) = 0.5 -> 5.0, 9.5 -> 95.0
    np.testing.assert_allclose([float(lo), float(hi)], [5.0, 95.0], rtol=1e-6)
    state = ac.ReturnNormState(low=jnp.float32(1.0), high=jnp.float32(5.0))
    offset, invscale = ac.return_norm_offset_invscale(state, 1.0)
    assert float(offset) == 1.0 and float(invscale) == 4.0
    adv = ac.advantages(jnp.array([3.0]), jnp.array([1.0]), offset, invscale)
    np.testing.assert_allclose(adv, [0.5])


def test_imagination_targets_shapes_and_values():
    n, h = 3, 4
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(n, h + 1)).astype(np.float32)
    values = rng.normal(size=(n, h + 1)).astype(np.float32)
    cont = (rng.random((n, h + 1)) > 0.2).astype(np.float32)
    state, out = ac.imagination_targets(rewards, values, cont, ac.init_return_norm(), gamma=0.997,
                                        lambda_=0.95)
    assert out["weights"].shape == (n, h + 1) and out["returns"].shape == (n, h)
    assert out["advantages"].shape == (n, h) and out["discounts"].shape == (n, h)
    ret = ac.lambda_returns(rewards[:, 1:], values[:, 1:], 0.997 * cont[:, 1:], 0.95)
    np.testing.assert_allclose(out["returns"], ret, rtol=1e-6)
    np.testing.assert_allclose(out["advantages"], (np.asarray(ret) - values[:, :-1]) / float(out["invscale"]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(state.low), 0.01 * np.quantile(np.asarray(ret), 0.05), rtol=1e-5)


# ----------------------------------------------------------------------- policy distributions
def test_bounded_normal_against_scipy():
    rng = np.random.default_rng(2)
    raw = rng.normal(size=(5, 3, 8)).astype(np.float32) * 2
    action = rng.uniform(-1.5, 1.5, size=(5, 3, 4)).astype(np.float32)
    mean, std = pdist.bounded_normal_params(raw, 0.1, 1.0)
    m, s = raw[..., :4], raw[..., 4:]
    np.testing.assert_allclose(mean, np.tanh(m), rtol=1e-6)
    np.testing.assert_allclose(std, 0.9 / (1 + np.exp(-(s + 2))) + 0.1, rtol=1e-6)
    assert np.all(np.asarray(std) >= 0.1) and np.all(np.asarray(std) <= 1.0)
    dist = pdist.PolicyDist(num_actions=4, discrete=False)
    ref = scipy.stats.norm(np.asarray(mean, np.float64), np.asarray(std, np.float64))
    np.testing.assert_allclose(dist.log_prob(raw, action), ref.logpdf(action).sum(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dist.entropy(raw), ref.entropy().sum(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dist.mode(raw), mean)
    eps = rng.normal(size=(5, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(dist.sample(raw, eps), np.asarray(mean) + eps * np.asarray(std), rtol=1e-6)
    assert dist.raw_size == 8
    noise = dist.draw_noise(jax.random.key(0), (5, 3))
    assert noise.shape == (5, 3, 4) and noise.dtype == jnp.float32


def test_discrete_policy():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 6)).astype(np.float32) * 3
    dist = pdist.PolicyDist(num_actions=6, discrete=True, unimix=0.01)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    p = 0.99 * e / e.sum(-1, keepdims=True) + 0.01 / 6
    np.testing.assert_allclose(dist.entropy(logits), -(p * np.log(p)).sum(-1), rtol=1e-5)
    mode = np.asarray(dist.mode(logits))
    np.testing.assert_array_equal(mode, np.eye(6)[p.argmax(-1)])
    g = rng.gumbel(size=(4, 6)).astype(np.float32)
    sample = np.asarray(dist.sample(logits, g))
    np.testing.assert_array_equal(sample, np.eye(6)[(np.log(p) + g).argmax(-1)])
    np.testing.assert_allclose(dist.log_prob(logits, sample), np.log(p[sample > 0]), rtol=1e-5, atol=1e-6)
    assert dist.raw_size == 6
    # Gumbel-max: sample frequencies follow p
    draws = dist.sample(jnp.tile(logits[:1], (20000, 1)), dist.draw_noise(jax.random.key(1), (20000,)))
    np.testing.assert_allclose(np.asarray(draws).mean(0), p[0], atol=0.015)


@pytest.mark.parametrize("variant,discrete", [("fake", True), ("fake_continuous", False)])
def test_policy_dist_from_config(variant, discrete):
    config = get_config("tiny", variant)
    dist = pdist.PolicyDist.from_config(config)
    assert dist.discrete is discrete and dist.num_actions == config.env.num_actions
    assert (dist.min_std, dist.max_std) == (0.1, 1.0)
    assert hash(dist) == hash(pdist.PolicyDist.from_config(config))   # usable as a static argument


# ------------------------------------------------------------------------- losses and gradients
def _actor_setup(discrete):
    rng = np.random.default_rng(4)
    n, h, a = 3, 5, 4
    dist = pdist.PolicyDist(num_actions=a, discrete=discrete)
    raw = jnp.asarray(rng.normal(size=(n, h, dist.raw_size)), jnp.float32)
    if discrete:
        actions = jnp.asarray(np.eye(a)[rng.integers(0, a, size=(n, h))], jnp.float32)
    else:
        actions = jnp.asarray(rng.uniform(-1, 1, size=(n, h, a)), jnp.float32)
    adv = jnp.asarray(rng.normal(size=(n, h)), jnp.float32)
    w = jnp.asarray(rng.uniform(0, 1, size=(n, h)), jnp.float32)
    return dist, raw, actions, adv, w


@pytest.mark.parametrize("discrete", [True, False])
def test_actor_loss_value_and_stop_gradients(discrete):
    dist, raw, actions, adv, w = _actor_setup(discrete)
    loss, aux = ac.actor_loss(raw, actions, adv, w, dist=dist, entropy_scale=3e-4)
    lp, ent = dist.log_prob(raw, actions), dist.entropy(raw)
    np.testing.assert_allclose(float(loss), -np.mean(w * (lp * adv + 3e-4 * ent)), rtol=1e-6)
    np.testing.assert_allclose(aux["log_prob"], lp)
    grads = jax.grad(lambda *xs: ac.actor_loss(*xs, dist=dist)[0], argnums=(0, 1, 2, 3))(raw, actions, adv, w)
    g_raw, g_act, g_adv, g_w = (np.asarray(g) for g in grads)
    assert np.abs(g_raw).max() > 0
    assert not g_act.any() and not g_adv.any() and not g_w.any()
    # REINFORCE: d loss / d raw = -mean(w (adv d logp + eta d H))
    expect = jax.grad(lambda r: -jnp.mean(w * (dist.log_prob(r, actions) * adv + 3e-4 * dist.entropy(r))))(raw)
    np.testing.assert_allclose(g_raw, expect, rtol=1e-5, atol=1e-8)


def test_actor_gradient_does_not_reach_targets():
    """Through imagination_targets, the actor loss has no gradient w.r.t. values, rewards, continues."""
    dist, raw, actions, _, _ = _actor_setup(True)
    n, h = raw.shape[:2]
    rng = np.random.default_rng(5)
    rew, val = (jnp.asarray(rng.normal(size=(n, h + 1)), jnp.float32) for _ in range(2))
    cont = jnp.ones((n, h + 1))

    def loss(rew, val, cont):
        _, out = ac.imagination_targets(rew, val, cont, ac.init_return_norm(), gamma=0.997, lambda_=0.95)
        return ac.actor_loss(raw, actions, out["advantages"], out["weights"][:, :h], dist=dist)[0]

    for g in jax.grad(loss, argnums=(0, 1, 2))(rew, val, cont):
        assert not np.asarray(g).any()


def _twohot_log_prob_stub(logits, target):
    """Simple differentiable stand-in: log-softmax picked at a target-dependent bin."""
    logp = jax.nn.log_softmax(logits)
    idx = jnp.clip(jnp.round(target).astype(jnp.int32) + logits.shape[-1] // 2, 0, logits.shape[-1] - 1)
    return jnp.take_along_axis(logp, idx[..., None], -1)[..., 0] + 0.0 * target


def test_critic_loss_value_and_stop_gradients():
    rng = np.random.default_rng(6)
    n, h, bins = 3, 5, 9
    logits = jnp.asarray(rng.normal(size=(n, h, bins)), jnp.float32)
    ret = jnp.asarray(rng.normal(size=(n, h)) * 2, jnp.float32)
    slow = jnp.asarray(rng.normal(size=(n, h)), jnp.float32)
    w = jnp.asarray(rng.uniform(size=(n, h)), jnp.float32)
    loss, aux = ac.critic_loss(logits, ret, slow, w, reg_scale=1.0, log_prob_fn=_twohot_log_prob_stub)
    expect = -np.mean(w * (_twohot_log_prob_stub(logits, ret) + _twohot_log_prob_stub(logits, slow)))
    np.testing.assert_allclose(float(loss), expect, rtol=1e-6)
    grads = jax.grad(lambda *xs: ac.critic_loss(*xs, log_prob_fn=_twohot_log_prob_stub)[0],
                     argnums=(0, 1, 2, 3))(logits, ret, slow, w)
    assert np.abs(np.asarray(grads[0])).max() > 0
    for g in grads[1:]:
        assert not np.asarray(g).any()
    # reg_scale 0 drops the slow-critic term
    loss0, _ = ac.critic_loss(logits, ret, slow, w, reg_scale=0.0, log_prob_fn=_twohot_log_prob_stub)
    np.testing.assert_allclose(float(loss0), -np.mean(w * _twohot_log_prob_stub(logits, ret)), rtol=1e-6)


def test_critic_loss_default_twohot_gradient_through_returns_is_zero():
    rng = np.random.default_rng(7)
    logits = jnp.asarray(rng.normal(size=(2, 3, 255)), jnp.float32)
    ret = jnp.asarray(rng.normal(size=(2, 3)) * 5, jnp.float32)
    g = jax.grad(lambda r: ac.critic_loss(logits, r, r, jnp.ones((2, 3)))[0])(ret)
    assert not np.asarray(g).any()
    loss, _ = ac.critic_loss(jnp.zeros((2, 3, 255)), ret, ret, jnp.ones((2, 3)))
    np.testing.assert_allclose(float(loss), 2 * math.log(255), rtol=1e-5)   # uniform bins: 2 x ln 255
