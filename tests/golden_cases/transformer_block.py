"""Golden check: one post-norm TSSM transformer block (docs/original.md §3.6.3)."""
from flax import nnx

from twister_jax import port
from twister_jax.networks import transformer


def check(fx):
    cfg = fx.config
    notes = " ".join(fx.meta.get("notes", []))
    # the block's parameters: the only prefix under which the fixture's params live
    names = sorted(fx.params)
    prefix = names[0].split(".self_att_module.")[0].split(".ff_module.")[0]
    assert all(n.startswith(prefix + ".") for n in names), (prefix, notes)
    x = fx.inputs["x"]
    blk = transformer.TransformerBlock(cfg["hidden"], cfg["heads"], ff_ratio=cfg["ff_ratio"],
                                       rngs=nnx.Rngs(0))
    port.load_torch_params(blk, fx.params, prefix)
    out, (k, v), aux = blk(x, fx.inputs["mask"], deterministic=True, return_aux=True)
    fx.assert_close("after_attention", aux["after_attention"])
    fx.assert_close("out", out)
    fx.assert_close("hidden_k", k)
    fx.assert_close("hidden_v", v)
