"""Golden check: imagination with policy-sampled actions, returns, normaliser, actor and critic losses
(docs/original.md §5.1-5.8).

`setup` and `forward` are shared with the `actor_critic_grads` checker, which differentiates the
same computation.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from golden_cases._tssm_common import build_tssm, fixture_start
from twister_jax import distributions as D
from twister_jax import imagination, port
from twister_jax.losses import actor_critic as ac
from twister_jax.networks import heads
from twister_jax.policy_dist import PolicyDist

sg = jax.lax.stop_gradient
BINS_RANGE = 20.0   # README section 1: 255 bins on [-20, 20] in every fixture set


def build_head(fx, name):
    """The fixture module `name` (a head: policy, value, v_target, reward, continue) with its parameters."""
    mod = fx.meta["modules"][name]
    a = mod["constructor_args"]
    prefix = mod.get("param_prefix", name).rstrip(".")
    out_size = fx.params[f"{prefix}.linear_proj.weight"].shape[0]
    head = heads.MLPHead(a["feat_size"], out_size, hidden=a["hidden_size"], num_layers=a["num_mlp_layers"],
                         ln_eps=a["norm"]["params"]["eps"], rngs=nnx.Rngs(0))
    port.load_torch_params(head, fx.params, prefix, allow_unexpected=True)
    return head


def setup(fx):
    i = fx.inputs
    model = build_tssm(fx)
    nets = {name: build_head(fx, name)
            for name in ("policy_network", "value_network", "v_target", "reward_network", "continue_network")}
    pa = fx.meta["modules"]["policy_network"]["constructor_args"]
    assert pa["discrete"] and pa.get("sampling_tmp", 1.0) == 1.0, pa
    dist = PolicyDist(num_actions=pa["num_actions"], discrete=True, unimix=0.01)
    start = fixture_start(i, model.num_blocks)
    return model, nets, dist, start


def forward(fx):
    """Imagination, heads and targets (everything up to the two losses), as the train step does it."""
    cfg, i = fx.config, fx.inputs
    model, nets, dist, start = setup(fx)
    policy = nets["policy_network"]
    act = lambda feat, g: dist.sample(policy(feat), g)
    img = jax.jit(lambda s, pn, g: imagination.imagine(model, act, s, pn, g))(
        start, i["gumbel_policy"], i["gumbel_prior"])
    feat = sg(img["feat"])                                               # (N, H+1, F)
    horizon = i["gumbel_prior"].shape[1]
    rewards = D.twohot_mean(nets["reward_network"](feat), BINS_RANGE)[..., 0]
    values = D.twohot_mean(nets["value_network"](feat), BINS_RANGE)[..., 0]
    cont = D.bernoulli_mode(nets["continue_network"](feat))[..., 0]
    c0 = 1.0 - jnp.asarray(i["dones"], jnp.float32).reshape(-1)         # row b*L + t
    continues = jnp.concatenate([c0[:, None], cont[:, 1:]], axis=1)
    norm0 = ac.ReturnNormState(low=jnp.float32(i["perc_init"][0]), high=jnp.float32(i["perc_init"][1]))
    norm, t = ac.imagination_targets(rewards, values, continues, norm0, gamma=cfg["gamma"],
                                     lambda_=cfg["lambda_td"])
    slow = D.twohot_mean(nets["v_target"](feat[:, :horizon]), BINS_RANGE)[..., 0]
    return dict(model=model, nets=nets, dist=dist, img=img, feat=feat, horizon=horizon, rewards=rewards,
                values=values, norm=norm, targets=t, slow=slow)


def actor_objective(fx, f, policy):
    h, t = f["horizon"], f["targets"]
    raw = policy(f["feat"][:, :h])
    return ac.actor_loss(raw, f["img"]["action"][:, :h], t["advantages"], t["weights"][:, :h], dist=f["dist"],
                         entropy_scale=fx.config["eta_entropy"])


def critic_objective(fx, f, value):
    h, t = f["horizon"], f["targets"]
    return ac.critic_loss(value(f["feat"][:, :h]), t["returns"], f["slow"], t["weights"][:, :h],
                          reg_scale=fx.config["critic_slow_reg_scale"], bins_range=BINS_RANGE)


def check(fx):
    f = forward(fx)
    img, t, norm = f["img"], f["targets"], f["norm"]
    fx.assert_close("img_stoch", img["stoch"])
    fx.assert_close("img_deter", img["deter"])
    fx.assert_close("img_action", img["action"])
    fx.assert_close("reward_mode", f["rewards"][:, 1:, None])
    fx.assert_close("value_mode", f["values"][..., None])
    fx.assert_close("discount", t["discounts"][..., None])
    fx.assert_close("weights", t["weights"][..., None])
    fx.assert_close("returns", t["returns"][..., None])
    fx.assert_close("perc_low", norm.low)
    fx.assert_close("perc_high", norm.high)
    fx.assert_close("offset", t["offset"])
    fx.assert_close("invscale", t["invscale"])
    actor, aux = actor_objective(fx, f, f["nets"]["policy_network"])
    fx.assert_close("policy_log_prob", aux["log_prob"])
    fx.assert_close("policy_entropy", aux["entropy"])
    fx.assert_close("actor_loss", actor)
    fx.assert_close("v_target_mode", f["slow"][..., None])
    critic, _ = critic_objective(fx, f, f["nets"]["value_network"])
    fx.assert_close("critic_loss", critic)
