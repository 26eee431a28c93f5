"""Property tests of `twister_jax.distributions` (docs/original.md §3.4, §3.7, §3.8, docs/quirks.md §10.5)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twister_jax import distributions as D


def _bins():
    return np.asarray(D.twohot_bins(255, 20.0))


def test_twohot_target_edges_and_hits():
    b = _bins()
    # exact inner bin hit -> weight 1 on it; values beyond the range -> edge bin.
    ys = np.asarray([0.0, float(D.symexp(b[100])), 1e12, -1e12, float(D.symexp(20.0)), 0.3], np.float32)
    t = np.asarray(D.twohot_target(ys))
    np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-6)
    assert t[0, 127] == pytest.approx(1.0)  # 0 is the centre bin
    assert t[1].max() == pytest.approx(1.0, abs=1e-3)
    assert t[2, 254] == 1.0 and t[3, 0] == 1.0
    assert t[4, 254] == pytest.approx(1.0, abs=1e-4)
    # in-between: two adjacent bins, weights reproduce symlog(y) as their mean.
    nz = np.nonzero(t[5])[0]
    assert len(nz) == 2 and nz[1] == nz[0] + 1
    assert float((t[5] * b).sum()) == pytest.approx(float(D.symlog(0.3)), abs=1e-6)


def test_twohot_log_prob_matches_target_and_trailing_axis():
    logits = jax.random.normal(jax.random.key(0), (3, 4, 255))
    y = jax.random.normal(jax.random.key(1), (3, 4)) * 5
    lp = D.twohot_log_prob(logits, y)
    lp1 = D.twohot_log_prob(logits, y[..., None])
    assert lp.shape == (3, 4)
    np.testing.assert_array_equal(lp, lp1)
    ref = (np.asarray(D.twohot_target(y)) * np.asarray(jax.nn.log_softmax(logits))).sum(-1)
    np.testing.assert_allclose(lp, ref, rtol=1e-6)


def test_twohot_mean_of_peaked_logits():
    logits = jnp.full((255,), -1e4).at[150].set(0.0)
    assert float(D.twohot_mean(logits)[0]) == pytest.approx(float(D.symexp(_bins()[150])), rel=1e-5)


def test_symlog_symexp_roundtrip():
    x = jnp.asarray([-1e3, -1.0, 0.0, 1e-3, 2.5, 1e4])
    np.testing.assert_allclose(D.symexp(D.symlog(x)), x, rtol=1e-5)


def test_st_sample_exactly_onehot_with_prob_gradient():
    logits = jax.random.normal(jax.random.key(2), (64, 32, 32)) * 3
    g = D.gumbel(jax.random.key(3), logits.shape)
    s = D.onehot_sample(logits, g)
    assert set(np.unique(np.asarray(s))) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.asarray(s).sum(-1), 1.0)
    idx = np.argmax(np.log(np.asarray(D.unimix_probs(logits))) + np.asarray(g), -1)
    np.testing.assert_array_equal(np.argmax(np.asarray(s), -1), idx)
    # gradient = that of p
    w = jax.random.normal(jax.random.key(4), logits.shape)
    g1 = jax.grad(lambda l: jnp.sum(w * D.onehot_sample(l, g)))(logits)
    g2 = jax.grad(lambda l: jnp.sum(w * D.unimix_probs(l)))(logits)
    np.testing.assert_allclose(g1, g2, atol=1e-6)


@pytest.mark.parametrize("st_logprob", [True, False])
def test_mode_onehot_and_straight_through_variant(st_logprob):
    logits = jax.random.normal(jax.random.key(5), (16, 8, 32)) * 3
    m = D.onehot_mode(logits, st_logprob=st_logprob)
    assert set(np.unique(np.asarray(m))) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.argmax(m, -1), np.argmax(logits, -1))
    w = jax.random.normal(jax.random.key(6), logits.shape)
    fn = D.unimix_log_probs if st_logprob else D.unimix_probs
    g1 = jax.grad(lambda l: jnp.sum(w * D.onehot_mode(l, st_logprob=st_logprob)))(logits)
    g2 = jax.grad(lambda l: jnp.sum(w * fn(l)))(logits)
    np.testing.assert_allclose(g1, g2, atol=1e-6)


def test_unimix_floor_and_normalised():
    logits = jnp.asarray([[100.0, -100.0, -100.0, -100.0]])
    p = D.unimix_probs(logits)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    assert float(p.min()) == pytest.approx(0.01 / 4, rel=1e-5)
    np.testing.assert_allclose(jnp.exp(D.unimix_log_probs(logits)), p, rtol=1e-6)


def test_kl_identical_zero_positive_otherwise_and_free_nats():
    lp = jax.random.normal(jax.random.key(7), (5, 32, 32))
    lq = jax.random.normal(jax.random.key(8), (5, 32, 32))
    np.testing.assert_allclose(D.onehot_kl(lp, lp), 0.0, atol=1e-6)
    kl = D.onehot_kl(lp, lq)
    assert kl.shape == (5,) and bool(jnp.all(kl > 0))
    clipped = D.kl_free_nats(jnp.asarray([0.2, 1.0, 3.0]), 1.0)
    np.testing.assert_array_equal(clipped, [1.0, 1.0, 3.0])
    # below the free nats the clipped term carries no gradient
    g = jax.grad(lambda x: jnp.sum(D.kl_free_nats(x, 1.0)))(jnp.asarray([0.2, 3.0]))
    np.testing.assert_array_equal(g, [0.0, 1.0])


def test_entropy_and_log_prob_event_dims():
    logits = jax.random.normal(jax.random.key(9), (2, 3, 4, 5))
    e1 = D.onehot_entropy(logits)
    e2 = D.onehot_entropy(logits, event_dims=2)
    assert e1.shape == (2, 3, 4) and e2.shape == (2, 3)
    np.testing.assert_allclose(e2, e1.sum(-1), rtol=1e-6)
    v = jax.nn.one_hot(jnp.argmax(logits, -1), 5)
    np.testing.assert_allclose(D.onehot_log_prob(logits, v, event_dims=2),
                               jnp.sum(jnp.max(D.unimix_log_probs(logits), -1), -1), rtol=1e-6)
    assert float(D.onehot_entropy(jnp.zeros((7,)))) == pytest.approx(np.log(7), rel=1e-6)


def test_bernoulli():
    x = jnp.asarray([[-3.0], [0.0], [0.1], [4.0]])
    np.testing.assert_array_equal(D.bernoulli_mode(x)[:, 0], [0.0, 0.0, 1.0, 1.0])
    c = jnp.asarray([[0.0], [1.0], [1.0], [0.0]])
    p = jax.nn.sigmoid(x)
    ref = (c * jnp.log(p) + (1 - c) * jnp.log1p(-p))[:, 0]
    np.testing.assert_allclose(D.bernoulli_log_prob(x, c), ref, rtol=1e-5)
