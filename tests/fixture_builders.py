"""Test-only helpers for the golden fixtures recorded from the original TWISTER.

* `head_from_fixture`, `policy_from_fixture`: build an MLP head of a fixture (sizes from its JSON)
  with the fixture's parameters loaded.
* `cnn_flat_to_torch`: our ``(y, x, c)``-flattened CNN features in the original's ``(c, y, x)`` order.
* `rel_to_abs`: the original attention's relative->absolute "skew" as an index map.

Nothing in `twister_jax` uses these; they moved here from the network modules.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from twister_jax import distributions as D
from twister_jax import port
from twister_jax.networks.heads import MLPHead


def head_from_fixture(fx, reference_class: str) -> tuple[MLPHead, dict]:
    """Builds the head of a golden fixture module (by reference class) and loads its parameters.

    Returns the module and the module's constructor args. Output size is read from the params.
    """
    mods = fx.meta["modules"]
    name, mod = next((n, m) for n, m in mods.items() if m.get("reference_class") == reference_class)
    a = mod["constructor_args"]
    prefix = mod.get("param_prefix", name).rstrip(".")
    out_size = fx.params[f"{prefix}.linear_proj.weight"].shape[0]
    head = MLPHead(a["feat_size"], out_size, hidden=a["hidden_size"], num_layers=a["num_mlp_layers"],
                   ln_eps=a["norm"]["params"]["eps"], rngs=nnx.Rngs(0))
    port.load_torch_params(head, fx.params, prefix, allow_unexpected=True)
    return head, a


def policy_from_fixture(fx, unimix: float = 0.01):
    """``sample(feat (N, F), gumbel (N, A)) -> straight-through one-hot action`` of a fixture's
    discrete `PolicyNetwork` (used by the `tssm_imagine` golden checker)."""
    head, _ = head_from_fixture(fx, "PolicyNetwork")

    def sample(feat, gumbel):
        return D.onehot_sample(head(feat), gumbel, unimix)

    return sample


def cnn_flat_to_torch(flat: np.ndarray, channels: int, size: int) -> np.ndarray:
    """Our ``(..., size*size*channels)`` ``(y, x, c)``-flattened features -> the original's ``(c, y, x)`` order."""
    flat = np.asarray(flat)
    lead = flat.shape[:-1]
    return flat.reshape(*lead, size, size, channels).swapaxes(-1, -3).swapaxes(-1, -2).reshape(*lead, -1)


def rel_to_abs(x: jax.Array, num_cached: int) -> jax.Array:
    """The original's relative->absolute "skew" as an index map (the model uses `attention._shift_rows`).

    Args:
      x: ``(..., T, Th + T)`` scores against a distance-ordered table (column c = distance
        ``Th + T - 1 - c``).
      num_cached: Th.

    Returns:
      ``(..., T, Th + T)`` with ``out[..., i, j] = x[..., i, Th + T - 1 - (Th + i - j)]`` for
      ``j <= Th + i``. Entries ``j > Th + i`` (masked in use) are clamped copies, not the skew's
      garbage.
    """
    t, n = x.shape[-2], x.shape[-1]
    i = np.arange(t)[:, None]
    j = np.arange(n)[None, :]
    idx = np.clip(n - 1 - (num_cached + i - j), 0, n - 1)
    idx = np.broadcast_to(idx, x.shape)
    return jnp.take_along_axis(x, jnp.asarray(idx), axis=-1)
