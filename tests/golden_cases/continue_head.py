"""Golden check: continue head (MLP -> 1 logit, Bernoulli), docs/original.md §3.7."""
from fixture_builders import head_from_fixture
from twister_jax import distributions as D


def check(fx):
    head, _ = head_from_fixture(fx, "ContinueNetwork")
    logits = head(fx.inputs["feats"])
    fx.assert_close("logits", logits)
    fx.assert_close("probs", D.bernoulli_probs(logits))
    fx.assert_close("mode", D.bernoulli_mode(logits))
    fx.assert_close("log_prob", D.bernoulli_log_prob(logits, fx.inputs["targets"]))
