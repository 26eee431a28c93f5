"""Post-norm Transformer-XL blocks of the TSSM (docs/original.md §3.6.3).

Block: ``y = LN(x + Dropout(Attn(x)))``, ``out = LN(y + Dropout(W2 relu(W1 y + b1) + b2))`` with
LayerNorm eps 1e-6 (``model.transformer_ln_eps``), FFN width ``ff_ratio * D``, dropout 0.1 after the
attention and after the FFN (and on the attention probabilities inside the attention layer), no
final LayerNorm after the stack.

Dtypes: matmuls run in the compute dtype; the residual stream and every LayerNorm run in float32, so
block outputs are float32.
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from twister_jax.networks import attention, layers


layer_norm = layers.layer_norm  # affine LN over the last axis, float32 two-pass statistics


def _split_key(key: Optional[jax.Array], n: int):
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


class TransformerBlock(nnx.Module):
    """One post-norm block (docs/original.md §3.6.3)."""

    def __init__(self, hidden: int, heads: int, *, ff_ratio: int = 2, dropout: float = 0.1,
                 ln_eps: float = 1e-6, max_pos: int = 2048, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.rate, self.dtype = dropout, dtype
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.attention = attention.RelPosSelfAttention(hidden, heads, dropout=dropout, max_pos=max_pos, **kw)
        self.att_norm = layer_norm(hidden, ln_eps, param_dtype=param_dtype, rngs=rngs)
        self.ff1 = attention.torch_linear(hidden, ff_ratio * hidden, **kw)
        self.ff2 = attention.torch_linear(ff_ratio * hidden, hidden, **kw)
        self.ff_norm = layer_norm(hidden, ln_eps, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array, cache_k: Optional[jax.Array] = None,
                 cache_v: Optional[jax.Array] = None, *, key: Optional[jax.Array] = None,
                 deterministic: bool = True, return_aux: bool = False):
        """Args/returns as `RelPosSelfAttention.__call__`; ``out`` is float32 ``(B, T, D)``.

        ``aux`` (when `return_aux`) holds ``after_attention`` (the first LayerNorm's output).
        """
        k_att, k_res1, k_res2 = _split_key(key, 3)
        a, kv = self.attention(x, mask, cache_k, cache_v, key=k_att, deterministic=deterministic)
        a = attention.dropout(a, self.rate, k_res1, deterministic)
        y = self.att_norm(x.astype(jnp.float32) + a.astype(jnp.float32))
        f = self.ff2(jax.nn.relu(self.ff1(y.astype(self.dtype))))
        f = attention.dropout(f, self.rate, k_res2, deterministic)
        out = self.ff_norm(y + f.astype(jnp.float32))
        if return_aux:
            return out, kv, {"after_attention": y}
        return out, kv


class Transformer(nnx.Module):
    """Stack of `blocks` post-norm blocks, no final LayerNorm (docs/original.md §3.6.3)."""

    def __init__(self, hidden: int, heads: int, blocks: int, *, ff_ratio: int = 2, dropout: float = 0.1,
                 ln_eps: float = 1e-6, max_pos: int = 2048, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.num_blocks = blocks
        self.blocks = nnx.List([
            TransformerBlock(hidden, heads, ff_ratio=ff_ratio, dropout=dropout, ln_eps=ln_eps,
                             max_pos=max_pos, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            for _ in range(blocks)])

    def __call__(self, x: jax.Array, mask: jax.Array,
                 caches: Optional[Sequence[tuple[jax.Array, jax.Array]]] = None, *,
                 key: Optional[jax.Array] = None, deterministic: bool = True, return_aux: bool = False):
        """Runs every block on ``x (B, T, D)``.

        Args:
          x: input tokens.
          mask: ``(B or 1, 1, T, Th + T)`` shared by every block.
          caches: optional per-block ``(k, v)`` each ``(B, Th, D)``.
          key: dropout key (split per block).
          deterministic: no dropout when True.
          return_aux: also return ``{"block_outputs": [...]}``.

        Returns:
          ``(out (B, T, D) float32, kvs)`` with ``kvs`` a tuple of per-block stop-gradiented
          ``(k, v)`` each ``(B, Th + T, D)``; plus ``aux`` when `return_aux`.
        """
        keys = _split_key(key, self.num_blocks)
        kvs, outs = [], []
        h = x
        for i, blk in enumerate(self.blocks):
            ck, cv = caches[i] if caches is not None else (None, None)
            h, kv = blk(h, mask, ck, cv, key=keys[i], deterministic=deterministic)
            kvs.append(kv)
            outs.append(h)
        if return_aux:
            return h, tuple(kvs), {"block_outputs": outs}
        return h, tuple(kvs)
