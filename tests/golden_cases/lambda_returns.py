"""Golden check: lambda returns and the return-percentile EMA normaliser (docs/original.md §5.4, §5.5)."""
import re

import numpy as np

from twister_jax.losses import actor_critic as ac


def check(fx):
    cfg = fx.config
    inp = fx.inputs
    returns = ac.lambda_returns(inp["rewards"], inp["values"], inp["discounts"], cfg["lambda_td"])
    fx.assert_close("returns", returns)

    state = ac.ReturnNormState(low=np.float32(inp["perc_init"][0]), high=np.float32(inp["perc_init"][1]))
    updates = sorted(int(m.group(1)) for k in inp if (m := re.fullmatch(r"perc_returns_(\d+)", k)))
    assert updates == list(range(len(updates))) and updates, sorted(inp)
    for i in updates:
        state, (lo, hi) = ac.update_return_norm(state, inp[f"perc_returns_{i}"], decay=cfg["return_norm_decay"],
                                                low_q=cfg["perc_low"], high_q=cfg["perc_high"])
        offset, invscale = ac.return_norm_offset_invscale(state, cfg["return_norm_limit"])
        fx.assert_close(f"quantile_low_{i}", lo)
        fx.assert_close(f"quantile_high_{i}", hi)
        fx.assert_close(f"perc_low_{i}", state.low)
        fx.assert_close(f"perc_high_{i}", state.high)
        fx.assert_close(f"offset_{i}", offset)
        fx.assert_close(f"invscale_{i}", invscale)
