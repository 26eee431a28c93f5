"""Golden check: autoregressive imagination from 4 start states with given actions (docs/original.md §5.1, §5.2).

The action of the last state is sampled by the policy network (`gumbel_policy`).
"""
import jax
import jax.numpy as jnp
import numpy as np

from golden_cases._tssm_common import build_tssm, fixture_start, policy_sampler
from twister_jax import imagination


def check(fx):
    model = build_tssm(fx)
    policy = policy_sampler(fx)
    i = fx.inputs
    n, horizon, num_actions = i["img_actions"].shape
    start = fixture_start(i, model.num_blocks)
    # noise of states 0..H: given actions for 0..H-1, the policy (with gumbel_policy) in state H
    given = np.concatenate([i["img_actions"], np.zeros((n, 1, num_actions), np.float32)], axis=1)
    gumbel = np.zeros((n, horizon + 1, num_actions), np.float32)
    gumbel[:, horizon] = i["gumbel_policy"][:, 0]
    use_policy = np.zeros((n, horizon + 1), bool)
    use_policy[:, horizon] = True

    def act(feat, noise):
        sampled = policy(feat, noise["gumbel"])
        return jnp.where(noise["use_policy"][:, None], sampled, noise["given"])

    out = jax.jit(lambda s, pn, g: imagination.imagine(model, act, s, pn, g))(
        start, {"given": given, "gumbel": gumbel, "use_policy": use_policy}, i["gumbel_prior"])
    fx.assert_close("stoch", out["stoch"])
    fx.assert_close("deter", out["deter"])
    fx.assert_close("logits", out["logits"])
    fx.assert_close("action", out["action"])
    fx.assert_close("masks", np.asarray(out["masks"], np.float32))
