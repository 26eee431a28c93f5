"""Shared checks of the two-hot MLP heads (reward, value)."""
from fixture_builders import head_from_fixture
from twister_jax import distributions as D


def check_twohot_head(fx, reference_class):
    head, _ = head_from_fixture(fx, reference_class)
    cfg = fx.config
    rng = float(cfg.get("high", 20.0))
    feats = fx.inputs["feats"]
    logits = head(feats)
    assert logits.shape[-1] == cfg.get("bins", logits.shape[-1])
    fx.assert_close("logits", logits)
    fx.assert_close("probs", D.twohot_probs(logits))
    fx.assert_close("mean", D.twohot_mean(logits, rng))
    fx.assert_close("mode", D.twohot_mode(logits, rng))
    fx.assert_close("log_prob", D.twohot_log_prob(logits, fx.inputs["targets"], rng))
