"""Golden check: relative sinusoid table and the relative->absolute skew (docs/original.md §3.6.4)."""
import re

import numpy as np

from fixture_builders import rel_to_abs
from twister_jax.networks import attention


def check(fx):
    cfg = fx.config
    dim = cfg["dim"]
    for name in fx.outputs:
        m = re.fullmatch(r"R_T(\d+)_Th(\d+)", name)
        if m:
            t, th = int(m.group(1)), int(m.group(2))
            fx.assert_close(name, attention.sinusoid(np.arange(th + t - 1, -1, -1), dim))
    small = cfg["small_table"]
    max_len = small["max_len"]
    fx.assert_close("table_small", attention.sinusoid(np.arange(max_len - 1, -max_len, -1), small["dim"]))
    x = fx.inputs["_rel_scores"]
    th = cfg["skew_Th"]
    t = x.shape[-2]
    out = np.asarray(rel_to_abs(x, th))
    j = np.arange(x.shape[-1])[None, :]
    i = np.arange(t)[:, None]
    where = np.broadcast_to(j <= th + i, x.shape)
    fx.assert_close("rel_to_abs_out", out, where=where)
