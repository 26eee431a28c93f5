"""Golden check: context, episode and combined attention masks (docs/original.md §3.6.5)."""
import re

import numpy as np

from twister_jax.networks import attention


def check(fx):
    default_left = fx.config["att_context_left"]
    context = {}
    for name in fx.outputs:
        m = re.fullmatch(r"context_T(\d+)_Th(\d+)(?:_left(\d+))?", name)
        if m:
            t, th = int(m.group(1)), int(m.group(2))
            left = int(m.group(3)) if m.group(3) else default_left
            context[(t, th)] = attention.context_mask(t, th, left)
            fx.assert_close(name, np.asarray(context[(t, th)], np.float32))
    seq = fx.inputs["is_firsts_seq"]
    ep_seq = attention.episode_mask(seq)
    fx.assert_close("firsts_seq", np.asarray(ep_seq, np.float32))
    step, hidden = fx.inputs["is_firsts_step"], fx.inputs["is_firsts_hidden"]
    ep_step = attention.episode_mask(step, hidden)
    fx.assert_close("firsts_step", np.asarray(ep_step, np.float32))
    t_seq = seq.shape[1]
    ctx_seq = attention.context_mask(t_seq, 0, default_left)
    fx.assert_close("combined_seq", np.asarray(attention.combine_masks(ctx_seq, ep_seq, True), np.float32))
    ctx_step = attention.context_mask(step.shape[1], hidden.shape[1], default_left)
    fx.assert_close("combined_step", np.asarray(attention.combine_masks(ctx_step, ep_step, True), np.float32))
