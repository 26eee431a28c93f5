"""Golden check: Atari policy, MLP -> logits -> unimix one-hot distribution (docs/original.md §5.7)."""
from flax import nnx

from twister_jax import port
from twister_jax.networks import heads
from twister_jax import policy_dist


def build_policy(fx):
    """The fixture's `PolicyNetwork` as an `MLPHead` with its parameters, and its constructor args."""
    (name, mod), = [(n, m) for n, m in fx.meta["modules"].items() if m["reference_class"] == "PolicyNetwork"]
    a = mod["constructor_args"]
    prefix = mod.get("param_prefix", name).rstrip(".")
    out_size = fx.params[f"{prefix}.linear_proj.weight"].shape[0]
    head = heads.MLPHead(a["feat_size"], out_size, hidden=a["hidden_size"], num_layers=a["num_mlp_layers"],
                         ln_eps=a["norm"]["params"]["eps"], rngs=nnx.Rngs(0))
    port.load_torch_params(head, fx.params, prefix)
    return head, a


def check(fx):
    head, a = build_policy(fx)
    assert a["discrete"] and a.get("sampling_tmp", 1.0) == 1.0, a
    dist = policy_dist.PolicyDist(num_actions=a["num_actions"], discrete=True, unimix=fx.config["unimix"])
    raw = head(fx.inputs["feats"])
    fx.assert_close("raw_logits", raw)
    fx.assert_close("probs", policy_dist.discrete_probs(raw, dist.unimix))
    fx.assert_close("log_probs", policy_dist.discrete_log_probs(raw, dist.unimix))
    fx.assert_close("entropy", dist.entropy(raw))
    fx.assert_close("log_prob_actions", dist.log_prob(raw, fx.inputs["actions"]))
    fx.assert_close("mode", dist.mode(raw))
    fx.assert_close("sample", dist.sample(raw, fx.inputs["gumbel"]))

