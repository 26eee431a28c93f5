"""Golden check: teacher-forced TSSM observe over windows with a mid-sequence episode start (3.6.7)."""
import numpy as np

from golden_cases._tssm_common import build_tssm


def check(fx):
    model = build_tssm(fx)
    i = fx.inputs
    actions = np.array(i["prev_actions"])
    out = model.observe(i["post_stoch"], actions, i["is_firsts"], i["gumbel_prior"], deterministic=True,
                        return_aux=True)
    np.testing.assert_array_equal(actions, i["prev_actions"])  # the caller's actions are not modified
    fx.assert_close("initial_deter", out["initial_deter"])
    fx.assert_close("initial_stoch", out["initial_stoch"])
    fx.assert_close("mixer_input", out["mixer_input"])
    fx.assert_close("mixer_output", out["mixer_output"])
    fx.assert_close("mask", np.broadcast_to(np.asarray(out["mask"], np.float32), fx.outputs["mask"].shape))
    for b, h in enumerate(out["block_outputs"]):
        fx.assert_close(f"block{b}_out", h)
    fx.assert_close("deter", out["deter"])
    fx.assert_close("prior_logits", out["prior_logits"])
    fx.assert_close("prior_stoch_sample", out["prior_stoch"])
    for b, (k, v) in enumerate(out["kv"]):
        fx.assert_close(f"hidden_k{b}", k)
        fx.assert_close(f"hidden_v{b}", v)
