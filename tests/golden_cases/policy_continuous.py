"""Golden check: DMC policy, MLP -> (tanh mean, bounded std) -> independent Normal (docs/original.md §5.7)."""
from twister_jax import policy_dist
from golden_cases.policy_discrete import build_policy


def check(fx):
    head, a = build_policy(fx)
    assert not a["discrete"], a
    cfg = fx.config
    dist = policy_dist.PolicyDist(num_actions=a["num_actions"], discrete=False, min_std=cfg["min_std"],
                                  max_std=cfg["max_std"])
    raw = head(fx.inputs["feats"])
    assert raw.shape[-1] == dist.raw_size
    fx.assert_close("raw_out", raw)
    mean, std = policy_dist.bounded_normal_params(raw, dist.min_std, dist.max_std)
    fx.assert_close("mean", mean)
    fx.assert_close("std", std)
    fx.assert_close("mode", dist.mode(raw))
    fx.assert_close("log_prob_actions", dist.log_prob(raw, fx.inputs["actions"]))
    fx.assert_close("entropy", dist.entropy(raw))
    fx.assert_close("sample", dist.sample(raw, fx.inputs["eps"]))
