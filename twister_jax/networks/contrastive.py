"""AC-CPC projection heads (docs/original.md §4.3): `steps` independent (anchor, target) MLP pairs.

Each MLP is ``layers`` x [Linear (bias) -> ELU] (ELU also after the last layer), no normalisation,
PyTorch-default init for weights and biases (docs/original.md §6.4). Pair k:

* ``mlp_feats`` (anchor g_k): ``feat_size + k A -> hidden -> ... -> hidden``,
* ``mlp_embed`` (target g'_k): ``embed_size -> hidden -> ... -> hidden``.

The width of the last layer equals `hidden` (the reference's ``out_size``, 512 on Atari).
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from twister_jax.networks import layers


class EluMLP(nnx.Module):
    """``layers`` x [Linear -> ELU]; input ``(..., fin)`` -> ``(..., out)`` float32."""

    def __init__(self, fin: int, hidden: int, out: int, num_layers: int = 2, *, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.fin, self.dtype = fin, dtype
        sizes = [fin] + [hidden] * (num_layers - 1) + [out]
        self.layers = nnx.List([
            nnx.Linear(sizes[i], sizes[i + 1], kernel_init=layers.torch_default_uniform(sizes[i]),
                       bias_init=layers.torch_default_uniform(sizes[i]), dtype=dtype,
                       param_dtype=param_dtype, rngs=rngs) for i in range(num_layers)])

    def __call__(self, x: jax.Array) -> jax.Array:
        chex.assert_shape(x, (..., self.fin))
        x = x.astype(self.dtype)
        for layer in self.layers:
            x = jax.nn.elu(layer(x))
        return x.astype(jnp.float32)


class ContrastivePair(nnx.Module):
    """One step's anchor and target MLPs."""

    def __init__(self, anchor_in: int, embed_size: int, hidden: int, out: int, num_layers: int, *,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.mlp_feats = EluMLP(anchor_in, hidden, out, num_layers, **kw)
        self.mlp_embed = EluMLP(embed_size, hidden, out, num_layers, **kw)


class ContrastiveHeads(nnx.Module):
    """The `steps` AC-CPC head pairs (docs/original.md §4.3); ``pairs[k]`` takes ``feat_size + k * num_actions`` inputs.

    Args:
      feat_size: prior feature width ``S*C + hidden``.
      embed_size: target width ``S*C`` (flattened augmented posterior sample).
      num_actions: A.
      steps, hidden, num_layers: ``model.contrastive_steps``, ``.contrastive_hidden``, ``.contrastive_layers``.
      out: output width (defaults to `hidden`).
    """

    def __init__(self, feat_size: int, embed_size: int, num_actions: int, *, steps: int = 10,
                 hidden: int = 512, num_layers: int = 2, out: int | None = None, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.feat_size, self.embed_size, self.num_actions, self.steps = feat_size, embed_size, num_actions, steps
        self.pairs = nnx.List([
            ContrastivePair(feat_size + k * num_actions, embed_size, hidden, out or hidden, num_layers,
                            dtype=dtype, param_dtype=param_dtype, rngs=rngs) for k in range(steps)])

    @classmethod
    def from_config(cls, model, num_actions: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        latent = model.stoch * model.discrete
        return cls(latent + model.hidden, latent, num_actions, steps=model.contrastive_steps,
                   hidden=model.contrastive_hidden, num_layers=model.contrastive_layers, dtype=dtype, rngs=rngs)
