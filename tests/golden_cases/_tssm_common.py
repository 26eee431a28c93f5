"""Builds the TSSM of a golden fixture from its JSON (every size read from the fixture)."""
from flax import nnx

from twister_jax import port
from twister_jax.networks import tssm


def module_entry(fx, reference_class):
    for name, mod in fx.meta["modules"].items():
        if mod["reference_class"] == reference_class:
            return mod
    raise KeyError(f"{fx.name}: no {reference_class} module in the fixture")


def build_tssm(fx):
    mod = module_entry(fx, "TSSM")
    a = mod["constructor_args"]
    model = tssm.TSSM(a["num_actions"], stoch=a["stoch_size"], discrete=a["discrete"], hidden=a["hidden_size"],
                      heads=a["num_heads"], blocks=a["num_blocks"], ff_ratio=a["ff_ratio"],
                      context=a["att_context_left"], dropout=a["drop_rate"], ln_eps=a["norm"]["params"]["eps"],
                      learn_initial=a["learn_initial"], rngs=nnx.Rngs(0))
    port.load_torch_params(model, fx.params, mod["param_prefix"].rstrip("."), allow_unexpected=True)
    return model


def policy_sampler(fx):
    """``sample(feat (N, F), gumbel (N, A)) -> one-hot action`` of the fixture's discrete policy network."""
    mod = module_entry(fx, "PolicyNetwork")
    prefix = mod["param_prefix"].rstrip(".")
    try:
        from twister_jax.networks import heads  # noqa: F401  (the shared implementation, once it exists)
    except ImportError:
        heads = None
    if heads is not None and hasattr(heads, "policy_from_fixture"):
        return heads.policy_from_fixture(fx)  # pragma: no cover - placeholder until the heads API is known
    return _local_policy(fx, mod, prefix)


def _local_policy(fx, mod, prefix):
    """Stand-in until `twister_jax.networks.heads` exists: MLP 2 x (Dense no bias, LN, SiLU) -> linear,
    unimix one-hot sample (spec 3.2, 5.7)."""
    import jax
    import jax.numpy as jnp

    a = mod["constructor_args"]
    eps = a["norm"]["params"]["eps"]
    p = {k[len(prefix) + 1:]: jnp.asarray(v) for k, v in fx.params.items() if k.startswith(prefix + ".")}

    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + eps) * w + b

    def sample(feat, gumbel):
        x = feat
        for layer in range(a["num_mlp_layers"]):
            x = jax.nn.silu(ln(x @ p[f"mlp.layers.{layer}.0.weight"].T, p[f"mlp.layers.{layer}.1.weight"],
                               p[f"mlp.layers.{layer}.1.bias"]))
        logits = x @ p["linear_proj.weight"].T + p["linear_proj.bias"]
        return tssm.onehot_st_sample(logits, gumbel, 0.01)
    return sample
