"""MLP heads: reward, value, continue (docs/original.md §3.7, §5.8) and the policy network forward (docs/original.md §5.7).

All heads share one class, `MLPHead`: `layers.MLP` trunk ("2 x 512": Dense no bias -> LN -> SiLU,
twice) -> output Linear with bias. The output dtype is float32 (distributions run in float32).

| head | out | output-layer init (docs/original.md §6.4) | distribution (`twister_jax.distributions`) |
|---|---|---|---|
| reward, value (and the slow critic) | `bins` (255) | zeros | `twohot_*` |
| continue | 1 | xavier uniform, zero bias | `bernoulli_*` |
| policy, discrete | A | xavier uniform, zero bias | `unimix_*` / `onehot_*` |
| policy, continuous | 2A | xavier uniform, zero bias | raw output; the bounded Normal lives in `policy_dist` |
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from twister_jax.networks import layers


class MLPHead(nnx.Module):
    """``(..., feat_size)`` -> ``(..., out_size)`` float32.

    Args:
      feat_size: input width (``S*C + hidden`` for model features).
      out_size: number of outputs.
      hidden, num_layers: trunk width and depth (``model.mlp_hidden``, ``model.mlp_layers``).
      ln_eps: LayerNorm eps (``model.ln_eps``).
      zero_output: zero-init the output weights (reward/value) instead of xavier uniform.
      dtype / param_dtype: compute / storage dtypes.
    """

    def __init__(self, feat_size: int, out_size: int, *, hidden: int = 512, num_layers: int = 2,
                 ln_eps: float = 1e-3, zero_output: bool = False, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.feat_size, self.out_size, self.dtype = feat_size, out_size, dtype
        self.mlp = layers.MLP(feat_size, hidden, num_layers, eps=ln_eps, dtype=dtype,
                              param_dtype=param_dtype, rngs=rngs)
        self.linear_proj = layers.Linear(hidden, out_size,
                                         kernel_init=layers.zeros if zero_output else layers.xavier_uniform,
                                         bias_init=layers.zeros, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, feat: jax.Array) -> jax.Array:
        chex.assert_shape(feat, (..., self.feat_size))
        out = self.linear_proj(self.mlp(feat.astype(self.dtype))).astype(jnp.float32)
        chex.assert_shape(out, feat.shape[:-1] + (self.out_size,))
        return out


def _kw(model, dtype, rngs):
    return dict(hidden=model.mlp_hidden, num_layers=model.mlp_layers, ln_eps=model.ln_eps, dtype=dtype, rngs=rngs)


def feat_size_of(model) -> int:
    """``S*C + hidden``: the model-feature width ``[flatten(stoch); deter]``."""
    return model.stoch * model.discrete + model.hidden


def reward_head(model, *, dtype=jnp.float32, rngs: nnx.Rngs) -> MLPHead:
    """Reward head from the ``model`` config block: 255 two-hot logits, zero-init output."""
    return MLPHead(feat_size_of(model), model.bins, zero_output=True, **_kw(model, dtype, rngs))


value_head = reward_head  # same class and init (docs/original.md §5.8); the slow critic is a copy


def continue_head(model, *, dtype=jnp.float32, rngs: nnx.Rngs) -> MLPHead:
    """Continue head: 1 Bernoulli logit, xavier output."""
    return MLPHead(feat_size_of(model), 1, **_kw(model, dtype, rngs))


def policy_head(model, num_actions: int, *, continuous: bool = False, dtype=jnp.float32,
                rngs: nnx.Rngs) -> MLPHead:
    """Policy network: A logits (discrete) or 2A raw outputs (continuous: mean | std halves)."""
    return MLPHead(feat_size_of(model), 2 * num_actions if continuous else num_actions,
                   **_kw(model, dtype, rngs))
