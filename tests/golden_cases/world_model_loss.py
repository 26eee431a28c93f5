"""Golden check: the complete world-model forward and every loss term (docs/original.md §3.8, §4, §5.1)."""
import jax
import numpy as np
from flax import nnx

from twister_jax import port
from twister_jax.losses import world_model as wml
from twister_jax.networks.world_model import WorldModel


def _args(fx, name):
    return fx.meta["modules"][name]["constructor_args"]


def build_world_model(fx):
    """WorldModel with every size read from the fixture's constructor args / parameter shapes."""
    enc, rssm, rew = _args(fx, "encoder_network"), _args(fx, "rssm"), _args(fx, "reward_network")
    cont = _args(fx, "contrastive_network")["per_step"]
    assert all(c["out_size"] == c["hidden_size"] for c in cont), "contrastive out_size != hidden_size"
    bins = fx.params["reward_network.linear_proj.weight"].shape[0]
    wm = WorldModel(rssm["num_actions"], hidden=rssm["hidden_size"], dim_cnn=enc["dim_cnn"],
                    stoch=rssm["stoch_size"], discrete=rssm["discrete"], blocks=rssm["num_blocks"],
                    heads=rssm["num_heads"], ff_ratio=rssm["ff_ratio"], context=rssm["att_context_left"],
                    dropout=rssm["drop_rate"], mlp_hidden=rew["hidden_size"], mlp_layers=rew["num_mlp_layers"],
                    bins=bins, ln_eps=rssm["norm"]["params"]["eps"], learn_initial=rssm["learn_initial"],
                    contrastive_steps=len(cont), contrastive_hidden=cont[0]["hidden_size"],
                    contrastive_layers=cont[0]["num_layers"], rngs=nnx.Rngs(0))
    port.load_torch_params(wm, fx.params)
    cfg = wml.LossConfig(free_nats=float(fx.config["free_nats"]),
                         contrastive_lambda=float(fx.config["contrastive_exp_lambda"]))
    return wm, cfg


def _nhwc(x):
    return np.asarray(x).transpose(0, 1, 3, 4, 2)


def fixture_batch(fx):
    i = fx.inputs
    return {"image": _nhwc(i["states_uint8"]), "action": i["actions"], "reward": i["rewards"],
            "is_first": i["is_firsts"] > 0, "is_terminal": i["dones"] > 0}


def fixture_noise(fx):
    i = fx.inputs
    noise = {name: i[name] for name in wml.NOISE_NAMES}
    noise["aug_image"] = _nhwc(i["aug_states_uint8"])
    return noise


def run_loss(fx, wm, cfg, *, grad=False):
    """Runs `world_model_loss` (eval mode) under jit; with `grad` returns ``((total, aux), grads)``."""
    graphdef, params, rest = nnx.split(wm, nnx.Param, ...)

    def f(params, batch, noise):
        m = nnx.merge(graphdef, params, rest)
        return wml.world_model_loss(m, batch, noise, cfg, deterministic=True, return_outputs=not grad)

    if grad:
        return jax.jit(jax.value_and_grad(f, has_aux=True))(params, fixture_batch(fx), fixture_noise(fx))
    return jax.jit(f)(params, fixture_batch(fx), fixture_noise(fx))


def check(fx):
    wm, cfg = build_world_model(fx)
    total, aux = run_loss(fx, wm, cfg)
    out = aux["outputs"]
    o = fx.outputs
    fx.assert_close("post_logits", out["post_logits"])
    fx.assert_close("post_stoch_sample", out["post_stoch"])
    fx.assert_close("deter", out["deter"])
    fx.assert_close("prior_logits", out["prior_logits"])
    fx.assert_close("prior_stoch_sample", out["prior_stoch"])
    fx.assert_close("aug_post_logits", out["aug_post_logits"])
    fx.assert_close("aug_post_stoch_sample", out["aug_post_stoch"])
    for b, (k, v) in enumerate(out["kv"]):
        if f"hidden_k{b}" in o:
            fx.assert_close(f"hidden_k{b}", k)
            fx.assert_close(f"hidden_v{b}", v)
    fx.assert_close("reward_logits", out["reward_logits"])
    fx.assert_close("continue_logits", out["continue_logits"])
    fx.assert_close("kl_unclipped", out["kl_unclipped"])
    fx.assert_close("actions_after_observe", out["actions_after_observe"])
    for name, value in aux["losses"].items():
        fx.assert_close(f"loss_{name}", value)
        fx.assert_close(f"weight_{name}", np.float32(aux["weights"][name]))
    assert len(aux["losses"]) == sum(1 for k in o if k.startswith("loss_") and k != "loss_total"), \
        "the fixture has loss terms we do not compute"
    fx.assert_close("loss_total", total)
    m = aux["metrics"]
    steps = sum(1 for k in o if k.startswith("metric_acc_con"))
    fx.assert_close("metric_acc_con", m["acc_con"])
    for k in range(1, steps):
        fx.assert_close(f"metric_acc_con_{k}", m[f"acc_con_{k}"])
    # start states for the actor (docs/original.md §5.1); the fixture stores block 0's windows
    start = aux["start"]
    n = start.query_flag.shape[0]
    fx.assert_close("start_is_firsts", np.asarray(start.query_flag).reshape(n, 1))
    fx.assert_close("start_is_firsts_hidden", start.cache.flags)
    for b in range(len(start.cache.k)):
        if f"start_hidden_k{b}" in o:
            fx.assert_close(f"start_hidden_k{b}", start.cache.k[b])
            fx.assert_close(f"start_hidden_v{b}", start.cache.v[b])
    batch = fixture_batch(fx)
    np.testing.assert_array_equal(np.asarray(aux["start_cont"]), 1.0 - batch["is_terminal"].reshape(-1))
