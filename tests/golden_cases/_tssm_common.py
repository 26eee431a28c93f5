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
    from fixture_builders import policy_from_fixture
    return policy_from_fixture(fx)


def fixture_start(inputs, blocks):
    """The imagination start states recorded in a fixture (`start_*` inputs) as a `StartState`."""
    import jax.numpy as jnp

    from twister_jax import imagination

    i = inputs
    cache = tssm.KVCache(k=tuple(jnp.asarray(i[f"start_hidden_k{b}"]) for b in range(blocks)),
                         v=tuple(jnp.asarray(i[f"start_hidden_v{b}"]) for b in range(blocks)),
                         flags=jnp.asarray(i["start_is_firsts_hidden"]),
                         valid=jnp.ones(i["start_is_firsts_hidden"].shape, bool))  # the original has no padding slots
    return imagination.StartState(stoch=i["start_stoch"][:, 0], deter=i["start_deter"][:, 0],
                                  logits=i["start_logits"][:, 0], cache=cache,
                                  query_flag=i["start_is_firsts"][:, 0])
