"""Property tests of the TSSM and the imagination roll-out (docs/original.md §3.6, §5.1, §5.2; docs/interfaces.md §1)."""
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import golden_dir
from twister_jax import imagination
from twister_jax.networks import attention
from twister_jax.networks.tssm import TSSM, features

S, C, A, D, W, T, B = 4, 3, 3, 16, 4, 7, 2


def _model(dtype=jnp.float32):
    m = TSSM(A, stoch=S, discrete=C, hidden=D, heads=2, blocks=2, context=W, dtype=dtype, rngs=nnx.Rngs(0))
    # non-zero initial vector and rel-pos biases so the tests see them
    m.weight_init[...] = jax.random.normal(jax.random.key(7), (D,))
    for blk in m.transformer.blocks:
        blk.attention.u[...] = 0.3 * jax.random.normal(jax.random.key(8), (D,))
        blk.attention.v[...] = 0.3 * jax.random.normal(jax.random.key(9), (D,))
    return m


def _inputs(is_first):
    k1, k2 = jax.random.split(jax.random.key(0))
    stoch = jax.nn.one_hot(jax.random.randint(k1, (B, T, S), 0, C), C)
    actions = jax.nn.one_hot(jax.random.randint(k2, (B, T), 0, A), A)
    actions = jnp.where(jnp.asarray(is_first)[..., None] > 0, 0.0, actions)
    return stoch, actions, jnp.asarray(is_first, jnp.float32)


def _stepwise(model, stoch, actions, is_first, gating):
    """The acting path: one jitted `step` per position from an empty cache, resets done by the caller."""

    @jax.jit
    def one(prev, act, cache, flag, reset):
        prev, act = model.reset_inputs(prev, act, reset)
        return model.step(prev, act, cache, flag, episode_mask_gating=gating)

    cache = model.empty_cache(B)
    deters, logits = [], []
    for t in range(T):
        prev = stoch[:, t - 1] if t else jnp.zeros_like(stoch[:, 0])
        reset = is_first[:, t] > 0 if t else jnp.ones((B,), bool)
        out = one(prev, actions[:, t], cache, is_first[:, t], reset)
        cache = out["cache"]
        deters.append(out["deter"])
        logits.append(out["prior_logits"])
    return jnp.stack(deters, 1), jnp.stack(logits, 1)


NO_MID_RESET = [[1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]]
MID_RESET = [[1, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0]]


@pytest.mark.parametrize("is_first,gating", [(NO_MID_RESET, True), (NO_MID_RESET, False), (MID_RESET, False)])
def test_cached_steps_equal_observe(is_first, gating):
    model = _model()
    stoch, actions, first = _inputs(is_first)
    obs = jax.jit(model.observe)(stoch, actions, first)
    deter, logits = _stepwise(model, stoch, actions, first, gating)
    np.testing.assert_allclose(np.asarray(deter), np.asarray(obs["deter"]), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(obs["prior_logits"]), atol=2e-5, rtol=1e-5)


def test_gated_steps_see_across_a_reset():
    """Quirk 10.2: with the original's gating, the step after a reset attends to the old episode."""
    model = _model()
    stoch, actions, first = _inputs(MID_RESET)
    obs = jax.jit(model.observe)(stoch, actions, first)
    deter, _ = _stepwise(model, stoch, actions, first, True)
    np.testing.assert_allclose(np.asarray(deter[:, 3]), np.asarray(obs["deter"][:, 3]), atol=2e-5)  # gate on
    assert not np.allclose(np.asarray(deter[0, 4]), np.asarray(obs["deter"][0, 4]), atol=1e-3)     # gate off


def test_observe_shapes_and_mask():
    model = _model()
    stoch, actions, first = _inputs(MID_RESET)
    g = jax.random.gumbel(jax.random.key(1), (B, T, S, C))
    out = jax.jit(lambda *a: model.observe(*a, key=jax.random.key(2), deterministic=False, return_aux=True))(
        stoch, actions, first, g)
    chex.assert_shape(out["deter"], (B, T, D))
    chex.assert_shape([out["prior_logits"], out["prior_stoch"]], (B, T, S, C))
    chex.assert_shape(out["mixer_input"], (B, T, S * C + A))
    assert len(out["kv"]) == 2
    chex.assert_shape([x for kv in out["kv"] for x in kv], (B, T, D))
    np.testing.assert_array_equal(np.asarray(out["prior_stoch"]).sum(-1), 1.0)
    mask = np.asarray(out["mask"])[:, 0]
    f = np.asarray(first) > 0
    for b, i, j in zip(*np.nonzero(mask)):
        assert j <= i <= j + W and not f[b, j + 1:i + 1].any()
    # the mixer input restarts from the initial latent and a zero action at t = 0 and every reset
    init = np.asarray(model.initial_state()[0]).reshape(-1)
    for b, t in [(0, 0), (0, 3), (1, 0), (1, 5)]:
        np.testing.assert_array_equal(np.asarray(out["mixer_input"][b, t]), np.concatenate([init, np.zeros(A)]))


def test_initial_state_gradient_reaches_w_init():
    model = _model()
    stoch, actions, first = _inputs(MID_RESET)
    graph, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        return jnp.sum(nnx.merge(graph, p, rest).observe(stoch, actions, first)["deter"] ** 3)
    grads = jax.jit(jax.grad(loss))(params)
    assert float(jnp.abs(grads["weight_init"][...]).sum()) > 0


def test_bfloat16_observe_close_to_float32():
    ref = _model()
    low = _model(jnp.bfloat16)
    nnx.update(low, nnx.state(ref, nnx.Param))
    stoch, actions, first = _inputs(MID_RESET)
    a = jax.jit(ref.observe)(stoch, actions, first)["deter"]
    b = jax.jit(low.observe)(stoch, actions, first)["deter"]
    assert b.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(b)))
    assert float(jnp.max(jnp.abs(a - b))) < 0.15 and float(jnp.mean(jnp.abs(a - b))) < 0.03
    start, noise, prior, _, _ = _start_and_noise(low, MID_RESET, True, horizon=2)
    assert start.cache.k[0].dtype == jnp.bfloat16
    out = jax.jit(lambda *x: imagination.imagine(low, _policy, *x))(start, noise, prior)
    assert bool(jnp.all(jnp.isfinite(out["deter"])))


def test_window_flags_shifted_and_aligned():
    f = np.zeros((1, 10))
    f[0, [0, 6]] = 1
    flags, query, valid = (np.asarray(x)[0] for x in imagination.window_flags(f, 4, flag_shift=True))
    for t in range(10):
        pos = np.arange(t - 3, t + 1)
        first_real = max(0, t - 3)
        expect = [1.0 if p == first_real else (f[0, p - 1] if p > first_real else 0.0) for p in pos]
        np.testing.assert_array_equal(flags[t], expect)
        np.testing.assert_array_equal(valid[t], pos >= 0)
    np.testing.assert_array_equal(query, f[0])
    flags, query, _ = (np.asarray(x)[0] for x in imagination.window_flags(f, 4, flag_shift=False))
    np.testing.assert_array_equal(flags[7], [0, 0, 1, 0])   # positions 4..7: the reset at 6 stays in its slot
    np.testing.assert_array_equal(query, 0.0)


def _start_and_noise(model, is_first, flag_shift, horizon=5):
    stoch, actions, first = _inputs(is_first)
    obs = jax.jit(model.observe)(stoch, actions, first)
    start = imagination.start_states(stoch, obs["deter"], stoch * 2.0, obs["kv"], first, slots=W,
                                     flag_shift=flag_shift)
    n = B * T
    noise = jax.random.gumbel(jax.random.key(3), (n, horizon + 1, A))
    prior = jax.random.gumbel(jax.random.key(4), (n, horizon, S, C))
    return start, noise, prior, obs, first


def _policy(feat, gumbel):
    logits = feat[:, :A] * 3.0 + feat[:, -A:]
    return jax.nn.one_hot(jnp.argmax(logits + gumbel, -1), A)


def test_imagine_shapes_and_first_step_mask():
    model = _model()
    horizon = 5
    for shift in (True, False):
        start, noise, prior, obs, first = _start_and_noise(model, MID_RESET, shift, horizon)
        out = jax.jit(lambda s, pn, g: imagination.imagine(model, _policy, s, pn, g))(start, noise, prior)
        n = B * T
        chex.assert_shape([out["stoch"], out["logits"]], (n, horizon + 1, S, C))
        chex.assert_shape(out["deter"], (n, horizon + 1, D))
        chex.assert_shape(out["action"], (n, horizon + 1, A))
        chex.assert_shape(out["feat"], (n, horizon + 1, S * C + D))
        chex.assert_shape(out["masks"], (n, horizon, 1, W + 1))
        np.testing.assert_array_equal(np.asarray(out["deter"][:, 0]), np.asarray(obs["deter"]).reshape(n, D))
        f = np.asarray(first) > 0
        m0 = np.asarray(out["masks"][:, 0, 0])
        for b in range(B):
            for t in range(T):
                pos = np.arange(t - W + 1, t + 1)
                if shift:  # flags of the previous position; the reset token itself is hidden (docs/quirks.md §10.1)
                    lo = max(0, t - W + 1)
                    flagged = [lo] + [p + 1 for p in range(lo, t) if f[b, p]]
                    expect = np.zeros(W, bool) if f[b, t] else pos >= max(flagged)
                else:      # aligned: the window back to (and including) the latest reset
                    resets = [p for p in range(t + 1) if f[b, p]]
                    expect = (pos >= (max(resets) if resets else 0)) & (pos >= 0)
                np.testing.assert_array_equal(m0[b * T + t, :W], expect, err_msg=f"shift={shift} b={b} t={t}")
                assert m0[b * T + t, W]


def test_imagine_equals_step_loop():
    model = _model()
    start, noise, prior, _, _ = _start_and_noise(model, MID_RESET, True, horizon=3)
    out = jax.jit(lambda *a: imagination.imagine(model, _policy, *a))(start, noise, prior)
    step = jax.jit(lambda *a: model.step(*a, episode_mask_gating=False))
    stoch, deter, cache, qf = start.stoch, start.deter, start.cache, start.query_flag
    for h in range(3):
        a = _policy(features(stoch, deter), noise[:, h])
        np.testing.assert_array_equal(np.asarray(out["action"][:, h]), np.asarray(a))
        o = step(stoch, a, cache, qf, prior[:, h])
        stoch, deter, cache, qf = o["prior_stoch"], o["deter"], o["cache"], jnp.zeros_like(qf)
        np.testing.assert_allclose(np.asarray(out["deter"][:, h + 1]), np.asarray(deter), atol=1e-5)


def test_start_states_match_world_model_loss_fixture():
    path = golden_dir() / "world_model_loss.json"
    if not path.exists():
        pytest.skip("world_model_loss fixture not present")
    meta = json.loads(path.read_text())
    arrs = np.load(path.with_suffix(".npz"))
    first = arrs["inputs/is_firsts"]
    blocks = meta["config"].get("num_blocks", 4)
    kv = tuple((arrs[f"outputs/hidden_k{b}"], arrs[f"outputs/hidden_v{b}"]) for b in range(blocks))
    b_, t_ = first.shape
    z = jnp.zeros((b_, t_, 1, 1))
    start = imagination.start_states(z, kv[0][0], z, kv, first, slots=arrs["outputs/start_is_firsts_hidden"].shape[1])
    np.testing.assert_array_equal(np.asarray(start.cache.flags), arrs["outputs/start_is_firsts_hidden"])
    np.testing.assert_array_equal(np.asarray(start.query_flag)[:, None], arrs["outputs/start_is_firsts"])
    for b in range(blocks):
        for kind in "kv":
            name = f"outputs/start_hidden_{kind}{b}"
            if name in arrs.files:
                got = start.cache.k[b] if kind == "k" else start.cache.v[b]
                np.testing.assert_array_equal(np.asarray(got), arrs[name])


class WindowVariantsTest(chex.TestCase):
    """Start-state flag/window construction is pure: same result under jit and without."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_window_flags_and_kv_windows(self):
        f = np.zeros((2, 9), np.float32)
        f[1, 4] = 1
        ref = [np.asarray(x) for x in imagination.window_flags(f, 4, True)]
        got = [np.asarray(x) for x in self.variant(lambda x: imagination.window_flags(x, 4, True))(f)]
        for a, b in zip(ref, got):
            np.testing.assert_array_equal(a, b)
        kv = np.arange(2 * 9 * 3, dtype=np.float32).reshape(2, 9, 3) + 1
        win = np.asarray(self.variant(lambda x: imagination.kv_windows(x, 4))(kv))
        assert win.shape == (2, 9, 4, 3)
        np.testing.assert_array_equal(win[:, 1, :2], 0.0)          # left padding
        np.testing.assert_array_equal(win[:, 6], kv[:, 3:7])        # positions t-3 .. t


def test_invalidate_hides_every_slot():
    model = _model()
    cache = model.empty_cache(2).replace(valid=jnp.ones((2, W), bool), flags=jnp.ones((2, W)))
    cache = cache.invalidate(jnp.array([True, False]))
    np.testing.assert_array_equal(np.asarray(cache.valid), [[False] * W, [True] * W])
    out = jax.jit(lambda c: model.step(jnp.zeros((2, S, C)), jnp.zeros((2, A)), c, jnp.zeros(2)))(cache)
    np.testing.assert_array_equal(np.asarray(out["mask"][0, 0]), [False] * W + [True])
    np.testing.assert_array_equal(np.asarray(out["cache"].valid[0]), [False] * (W - 1) + [True])
