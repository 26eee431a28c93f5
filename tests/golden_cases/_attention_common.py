"""Shared checker of the attention_relpos_{seq,step,chunk} golden cases."""
import numpy as np
from flax import nnx

from twister_jax import port
from twister_jax.networks import attention


def check_attention(fx):
    args = fx.module_args(0)
    prefix = list(fx.meta["modules"].values())[0]["param_prefix"].rstrip(".")
    hidden, heads = fx.config["hidden"], fx.config["heads"]
    layer = attention.RelPosSelfAttention(hidden, heads, dropout=args.get("drop_rate", 0.1),
                                          max_pos=fx.config.get("max_pos_encoding", 2048), rngs=nnx.Rngs(0))
    port.load_torch_params(layer, fx.params, prefix)
    x = fx.inputs["x"]
    out, (k, v), aux = layer(x, fx.inputs["mask"], fx.inputs.get("hidden_k"), fx.inputs.get("hidden_v"),
                             deterministic=True, return_aux=True)
    fx.assert_close("out", out)
    fx.assert_close("att_w", aux["att_w"])
    fx.assert_close("new_hidden_k", k)
    fx.assert_close("new_hidden_v", v)
    fx.assert_close("pos_table", aux["pos_table"])
    fx.assert_close("pos_proj", aux["pos_proj"])
