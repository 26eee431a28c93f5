"""Golden check: symlog / symexp and the two-hot distribution alone (docs/original.md §3.7)."""
import numpy as np

from twister_jax import distributions as D


def check(fx):
    cfg, inp = fx.config, fx.inputs
    n_bins, rng = int(cfg["bins"]), float(cfg["high"])
    assert float(cfg["low"]) == -rng
    logits, y = inp["logits"], inp["targets"]
    assert logits.shape[-1] == n_bins
    fx.assert_close("bins", D.twohot_bins(n_bins, rng))
    fx.assert_close("probs", D.twohot_probs(logits))
    fx.assert_close("mean", D.twohot_mean(logits, rng))
    fx.assert_close("log_prob", D.twohot_log_prob(logits, y, rng))
    fx.assert_close("symlog_targets", D.symlog(y))
    fx.assert_close("symexp_of_symlog", D.symexp(D.symlog(y)))
