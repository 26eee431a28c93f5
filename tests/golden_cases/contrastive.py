"""Golden check: the AC-CPC head pairs and InfoNCE (docs/original.md §4.2-4.4)."""
from flax import nnx

from twister_jax import port
from twister_jax.losses import ac_cpc
from twister_jax.networks import contrastive


def check(fx):
    (name, mod), = fx.meta["modules"].items()
    per_step = mod["constructor_args"]["per_step"]
    prefix = mod.get("param_prefix", name).rstrip(".")
    inp, cfg = fx.inputs, fx.config
    prior_feat, aug_embed, actions = inp["prior_feat"], inp["aug_embed"], inp["cond_actions"]
    num_actions = actions.shape[-1]
    s0 = per_step[0]
    assert all(p["feat_size"] == s0["feat_size"] + k * num_actions for k, p in enumerate(per_step))
    heads = contrastive.ContrastiveHeads(s0["feat_size"], s0["embed_size"], num_actions, steps=len(per_step),
                                         hidden=s0["hidden_size"], num_layers=s0["num_layers"], out=s0["out_size"],
                                         rngs=nnx.Rngs(0))
    port.load_torch_params(heads, fx.params, prefix)
    total, steps, details = ac_cpc.contrastive_loss(heads, prior_feat, aug_embed, actions,
                                                    cfg["contrastive_exp_lambda"], return_details=True)
    for k, d in enumerate(details):
        for key in ("anchor_input", "target_input", "anchor_out", "target_out", "info_nce"):
            fx.assert_close(f"{key}_{k}", d[key])
        fx.assert_close(f"loss_{k}", steps["loss"][k])
        fx.assert_close(f"weight_{k}", steps["weight"][k])
        fx.assert_close(f"acc_{k}", steps["acc"][k])
    fx.assert_close("weighted_total", total)
