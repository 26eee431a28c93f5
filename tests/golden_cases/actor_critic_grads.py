"""Golden check: gradients of the actor loss w.r.t. the policy and of the critic loss w.r.t. the
value network (docs/original.md §5.6, §5.8): pins every stop-gradient of the two losses."""
import jax
import numpy as np
from flax import nnx

from golden_cases.actor_critic_losses import actor_objective, critic_objective, forward
from twister_jax import port


def _torch_grads(module, grads_state, prefix):
    """Gradient pytree of `module`'s params -> ``{"<prefix>.<torch name>": array}`` in PyTorch layout."""
    pure = nnx.to_pure_dict(grads_state)
    out = {}
    for name, (path, conv) in port.torch_map(module).items():
        g = np.asarray(port.get_path(pure, path))
        # the converters are transposes (self-inverse on 2-D kernels) or the identity
        assert conv in (port.linear_kernel, port.identity), (name, conv)
        out[f"{prefix}.{name}"] = conv(g)
    return out


def _grad(module, objective):
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def loss(p):
        return objective(nnx.merge(graphdef, p, rest))[0]

    value, grads = jax.value_and_grad(loss)(params)
    return value, grads


def check(fx):
    f = forward(fx)
    for net, objective, key in (("policy_network", actor_objective, "actor_loss"),
                                ("value_network", critic_objective, "critic_loss")):
        module = f["nets"][net]
        loss, grads = _grad(module, lambda m: objective(fx, f, m))
        fx.assert_close(key, loss)
        prefix = fx.meta["modules"][net].get("param_prefix", net).rstrip(".")
        got = _torch_grads(module, grads, prefix)
        expected = sorted(k[len("grad/"):] for k in fx.outputs if k.startswith(f"grad/{prefix}."))
        assert sorted(got) == expected, (sorted(got), expected)
        for name in expected:
            fx.assert_close(f"grad/{name}", got[name])
