"""Golden check: unimix one-hot categorical over independent latents (docs/original.md §3.4)."""
from twister_jax import distributions as D


def check(fx):
    cfg, inp = fx.config, fx.inputs
    u = float(cfg["unimix"])
    lp_, lq = inp["logits_p"], inp["logits_q"]
    assert lp_.shape[-2:] == (cfg["stoch_size"], cfg["discrete"])
    fx.assert_close("probs", D.unimix_probs(lp_, u))
    fx.assert_close("log_probs", D.unimix_log_probs(lp_, u))
    fx.assert_close("mode", D.onehot_mode(lp_, u))
    fx.assert_close("entropy", D.onehot_entropy(lp_, u, event_dims=2))
    fx.assert_close("log_prob_value", D.onehot_log_prob(lp_, inp["value"], u, event_dims=2))
    fx.assert_close("kl_p_q", D.onehot_kl(lp_, lq, u))
    fx.assert_close("sample", D.onehot_sample(lp_, inp["gumbel"], u))
