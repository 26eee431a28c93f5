"""Transformer-XL relative-position multi-head self-attention and its masks (docs/original.md §3.6.4, §3.6.5).

Layouts: tokens ``(B, T, D)``; a KV cache holds the *projected* keys/values ``(B, Th, D)`` (after
`key`/`value`, before the head split); masks are ``(B or 1, 1, T, Th + T)`` with 1 (True) = visible,
keys ordered cache first, then the chunk. Query ``i`` sits at absolute position ``p = Th + i``,
key ``j`` at position ``j``.

Position scores pick ``E(p - j)`` (``E = pos(R(d))`` over the distances ``0 .. Th + T - 1``)
with a pad/reshape shift (`_shift_rows`, pure data movement, no gather/scatter) instead of the
reference's "skew"; both give the same scores for every visible key (``j <= p``).
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from twister_jax.networks import layers

NEG_INF = -1e9  # docs/original.md §3.6.5: masked scores get -1e9 (not -inf), so fully masked rows stay finite


# --------------------------------------------------------------------------------------------
# Sinusoid table (docs/original.md §3.6.4)
# --------------------------------------------------------------------------------------------

def sinusoid(distances, dim: int) -> np.ndarray:
    """Relative sinusoid rows ``R(d)`` for static integer distances.

    ``R(d)[2m] = sin(d / 10000^(2m/dim))``, ``R(d)[2m+1] = cos(d / 10000^(2m/dim))`` (interleaved).

    Args:
      distances: integer array-like of any shape (static; NumPy).
      dim: table width D (even).

    Returns:
      float32 NumPy array ``distances.shape + (dim,)`` (computed in float64, rounded once).
    """
    d = np.asarray(distances, dtype=np.float64)[..., None]
    inv_freq = 1.0 / (10000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    ang = d * inv_freq
    out = np.stack([np.sin(ang), np.cos(ang)], axis=-1).reshape(d.shape[:-1] + (dim,))
    return out.astype(np.float32)


def _shift_rows(rel: jax.Array, num_cached: int) -> jax.Array:
    """Distance-ordered scores -> key-ordered scores by pure data movement (no gather).

    Table row r holds distance ``n - 1 - r``, so query i (position ``p = Th + i``) needs row
    ``t - 1 - i + j`` for key j: ``out[..., i, j] = rel[..., i, j + t - 1 - i]`` for ``j <= p``. With
    the rows zero-padded to width ``n + 1`` and flattened, that element sits at flat index
    ``(t - 1) + i n + j``, so one pad, one slice and two reshapes give every row its shift
    (Transformer-XL's skew written in the forward direction; its transpose is pad/slice again).
    Entries ``j > p`` (always masked) are set to 0.

    Args:
      rel: ``(..., T, n)`` with ``n = Th + T``.
      num_cached: Th.

    Returns:
      ``(..., T, n)`` in ``rel.dtype``.
    """
    t, n = rel.shape[-2], rel.shape[-1]
    lead = rel.shape[:-2]
    flat = jnp.pad(rel, [(0, 0)] * (rel.ndim - 1) + [(0, 1)]).reshape(lead + (t * (n + 1),))
    out = flat[..., t - 1:t - 1 + t * n].reshape(lead + (t, n))
    keep = np.arange(n)[None, :] <= num_cached + np.arange(t)[:, None]
    return jnp.where(jnp.asarray(keep), out, jnp.zeros((), out.dtype))


# --------------------------------------------------------------------------------------------
# Masks (docs/original.md §3.6.5); all return bool, True = visible
# --------------------------------------------------------------------------------------------

def context_mask(num_queries: int, num_cached: int, left: int) -> jax.Array:
    """Causal + left-context mask: key j visible to query p = Th + i iff ``p - left <= j <= p``.

    Returns:
      bool ``(1, 1, T, Th + T)``.
    """
    p = num_cached + np.arange(num_queries)[:, None]
    j = np.arange(num_cached + num_queries)[None, :]
    return jnp.asarray(((j <= p) & (j >= p - left))[None, None])


def episode_mask(query_flags: jax.Array, cache_flags: Optional[jax.Array] = None) -> jax.Array:
    """Episode mask from per-position "first" flags.

    Key column j is hidden from query row i iff some flag visible to row i sits at a column
    ``q > j``; row i sees every cache flag (column = cache index) and the chunk flags of rows
    ``i' <= i`` (column ``Th + i'``). A flagged (reset) position itself stays visible.

    Args:
      query_flags: ``(B, T)`` chunk flags (bool or 0/1 float).
      cache_flags: optional ``(B, Th)`` flags of the cached keys.

    Returns:
      bool ``(B, 1, T, Th + T)``.
    """
    qf = jnp.asarray(query_flags) > 0
    b, t = qf.shape
    cf = jnp.zeros((b, 0), bool) if cache_flags is None else (jnp.asarray(cache_flags) > 0)
    th = cf.shape[1]
    lower = jnp.asarray(np.tril(np.ones((t, t), bool)))                     # i' <= i
    chunk = qf[:, None, :] & lower[None]                                    # (B, T, T)
    flags = jnp.concatenate([jnp.broadcast_to(cf[:, None, :], (b, t, th)), chunk], axis=-1)
    # hidden[j] = any(flags[q] for q > j): exclusive reverse cumulative "or".
    rev = jnp.cumsum(flags[..., ::-1].astype(jnp.int32), axis=-1)[..., ::-1]  # inclusive suffix count
    after = jnp.concatenate([rev[..., 1:], jnp.zeros((b, t, 1), jnp.int32)], axis=-1)
    return (after == 0)[:, None]


def combine_masks(context: jax.Array, episode: Optional[jax.Array] = None,
                  apply_episode=True, valid: Optional[jax.Array] = None) -> jax.Array:
    """Final mask = context AND (episode if `apply_episode`) AND validity.

    Args:
      context: bool ``(1 or B, 1, T, Th + T)``.
      episode: bool ``(B, 1, T, Th + T)`` or None.
      apply_episode: Python or traced bool scalar: the gating rule of docs/original.md §3.6.5 is decided by the
        caller (e.g. ``jnp.any(is_first)`` for the original's gating, True to always apply).
      valid: optional bool ``(B, Th + T)`` key validity (unfilled cache slots), always applied.

    Returns:
      bool mask broadcast to ``(B, 1, T, Th + T)`` (or ``(1, ...)`` when nothing is per-batch).
    """
    mask = jnp.asarray(context, bool)
    if episode is not None:
        mask = mask & (episode | jnp.logical_not(jnp.asarray(apply_episode, bool)))
    if valid is not None:
        mask = mask & jnp.asarray(valid, bool)[:, None, None, :]
    return mask


# --------------------------------------------------------------------------------------------
# Linear helpers (docs/original.md §6.4: PyTorch default init for Q/K/V/O/pos and the FFN)
# --------------------------------------------------------------------------------------------


def torch_linear(in_features: int, out_features: int, *, dtype, param_dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """Linear with bias and the PyTorch default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (docs/original.md §6.4)."""
    init = layers.torch_default_uniform(in_features)
    return nnx.Linear(in_features, out_features, use_bias=True, kernel_init=init, bias_init=init,
                      dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def dropout(x: jax.Array, rate: float, key: Optional[jax.Array], deterministic: bool) -> jax.Array:
    """Inverted dropout with an explicit key (identity when `deterministic` or rate 0)."""
    if deterministic or rate == 0.0:
        return x
    if key is None:
        raise ValueError("dropout needs a key when deterministic=False")
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x)).astype(x.dtype)


# --------------------------------------------------------------------------------------------
# Attention layer
# --------------------------------------------------------------------------------------------

class RelPosSelfAttention(nnx.Module):
    """Relative-position multi-head self-attention with an optional KV cache (docs/original.md §3.6.4).

    ``score_h(p, j) = [(q_p + u)_h . k_j + (q_p + v)_h . E(p - j)_h] / sqrt(d)`` with
    ``E(dist) = pos(R(dist))``; masked scores get -1e9; dropout on the attention probabilities.
    Heads split features contiguously (head h = features ``h*d .. (h+1)*d - 1``), as do u and v.
    """

    def __init__(self, hidden: int, heads: int, *, dropout: float = 0.1, max_pos: int = 2048,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must divide by heads={heads}")
        self.hidden, self.heads, self.head_dim = hidden, heads, hidden // heads
        self.rate, self.max_pos, self.dtype = dropout, max_pos, dtype
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.query = torch_linear(hidden, hidden, **kw)
        self.key = torch_linear(hidden, hidden, **kw)
        self.value = torch_linear(hidden, hidden, **kw)
        self.output = torch_linear(hidden, hidden, **kw)
        self.pos = torch_linear(hidden, hidden, **kw)
        self.u = nnx.Param(jnp.zeros((hidden,), param_dtype))
        self.v = nnx.Param(jnp.zeros((hidden,), param_dtype))

    def _split(self, x):
        return x.reshape(x.shape[:-1] + (self.heads, self.head_dim))

    def __call__(self, x: jax.Array, mask: jax.Array, cache_k: Optional[jax.Array] = None,
                 cache_v: Optional[jax.Array] = None, *, key: Optional[jax.Array] = None,
                 deterministic: bool = True, return_aux: bool = False):
        """Attends the chunk ``x`` over ``[cache ; x]``.

        Args:
          x: ``(B, T, D)`` tokens (cast to the compute dtype).
          mask: bool/0-1 ``(B or 1, 1, T, Th + T)``, 1 = visible.
          cache_k, cache_v: optional projected keys/values ``(B, Th, D)`` of earlier tokens.
          key: dropout key (needed when not deterministic).
          deterministic: no dropout when True.
          return_aux: also return a dict with ``att_w (B, heads, T, Th + T)`` (float32),
            ``pos_table``/``pos_proj`` ``(Th + T, D)`` (rows = distances ``Th + T - 1 .. 0``).

        Returns:
          ``(out (B, T, D), (new_k, new_v))`` where ``new_k = sg([cache_k ; key(x)])``
          ``(B, Th + T, D)``; plus ``aux`` when `return_aux`.
        """
        x = x.astype(self.dtype)
        b, t, _ = x.shape
        q = self.query(x)
        k_new = self.key(x)
        v_new = self.value(x)
        if cache_k is not None:
            k_all = jnp.concatenate([cache_k.astype(k_new.dtype), k_new], axis=1)
            v_all = jnp.concatenate([cache_v.astype(v_new.dtype), v_new], axis=1)
        else:
            k_all, v_all = k_new, v_new
        n = k_all.shape[1]
        th = n - t
        if n > self.max_pos:
            raise ValueError(f"{n} keys exceed max_pos={self.max_pos}")
        # distance-ordered table, rows = distances n-1 .. 0 (the reference's order)
        table = jnp.asarray(sinusoid(np.arange(n - 1, -1, -1), self.hidden))
        e = self.pos(table.astype(self.dtype))                                 # (n, D)
        u = self.u[...].astype(self.dtype)
        v = self.v[...].astype(self.dtype)
        qh = self._split(q)                                                     # (B, T, H, d)
        kh = self._split(k_all)                                                 # (B, n, H, d)
        vh = self._split(v_all)
        eh = self._split(e)                                                     # (n, H, d)
        f32 = jnp.float32
        content = jnp.einsum("bthd,bnhd->bhtn", qh + self._split(u), kh, preferred_element_type=f32)
        rel = jnp.einsum("bthd,rhd->bhtr", qh + self._split(v), eh, preferred_element_type=f32)
        rel = _shift_rows(rel, th)
        scores = (content + rel) / math.sqrt(self.head_dim)
        visible = jnp.asarray(mask) > 0
        scores = scores + jnp.where(visible, 0.0, NEG_INF).astype(f32)
        att = jax.nn.softmax(scores, axis=-1)
        att_d = dropout(att, self.rate, key, deterministic)
        ctx = jnp.einsum("bhtn,bnhd->bthd", att_d.astype(self.dtype), vh,
                         preferred_element_type=f32).astype(self.dtype)
        out = self.output(ctx.reshape(b, t, self.hidden))
        new_kv = (jax.lax.stop_gradient(k_all), jax.lax.stop_gradient(v_all))
        if return_aux:
            return out, new_kv, {"att_w": att, "pos_table": table, "pos_proj": e}
        return out, new_kv
