"""Imagination: start states from a world-model pass (docs/original.md §5.1) and the H-step roll-out (docs/original.md §5.2).

The roll-out is one `jax.lax.scan` whose carry is the latent, the fixed W-slot KV cache (with its
episode flags and validity mask) and the query flag; per step it takes the policy noise and the
prior Gumbel noise. An action function ``act(feat, noise) -> action`` makes the same scan serve the
``tssm_imagine`` fixture (given actions, the last one from the policy) and the actor step (the policy
samples every action): per step, the action of state h, then the prior sample of state h+1.

Shapes: N start states (= B*T), H horizon, W cache slots (8), S, C latent, A actions, D width.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from twister_jax.networks.tssm import TSSM, KVCache, features

sg = jax.lax.stop_gradient


@flax.struct.dataclass
class StartState:
    """Imagination start states (all stop-gradiented).

    Attributes:
      stoch: ``(N, S, C)`` posterior samples; deter: ``(N, D)``; logits: ``(N, S, C)`` posterior logits.
      cache: `KVCache` with per-block ``(N, W, D)`` windows, flags ``(N, W)``, validity ``(N, W)``.
      query_flag: ``(N,)`` flag of the first imagined token.
    """
    stoch: jax.Array
    deter: jax.Array
    logits: jax.Array
    cache: KVCache
    query_flag: jax.Array


def window_flags(is_first: jax.Array, slots: int, flag_shift: bool = True):
    """Cache flags, query flags and validity of the W-slot windows ending at every position.

    Slot s of the window of position t holds position ``pos = t - W + 1 + s``.

    Args:
      is_first: ``(B, T)`` bool or 0/1.
      slots: W.
      flag_shift: True reproduces the original (docs/quirks.md §10.1, ``quirks.imagination_flag_shift``):
        query flag = ``is_first_t``; cache flags = ``[0]*max(0, W-1-t) ++ [1] ++
        is_first[max(0, t-W+1) : t]``, i.e. slot ``pos`` carries ``is_first[pos-1]`` and the oldest
        real slot carries 1. False aligns them like the training path: slot ``pos`` carries
        ``is_first[pos]`` (padding 0) and the new imagined token's query flag is 0.

    Returns:
      ``(flags (B, T, W) float32, query (B, T) float32, valid (B, T, W) bool)``.
    """
    f = (jnp.asarray(is_first) > 0).astype(jnp.float32)
    b, t = f.shape
    pos = np.arange(t)[:, None] - slots + 1 + np.arange(slots)[None, :]        # (T, W)
    valid = pos >= 0
    if flag_shift:
        first_real = np.maximum(0, np.arange(t) - slots + 1)[:, None]
        prev = f[:, np.clip(pos - 1, 0, t - 1)]                                 # is_first[pos-1]
        flags = jnp.where(pos == first_real, 1.0, jnp.where(pos > first_real, prev, 0.0))
        query = f
    else:
        flags = jnp.where(valid, f[:, np.clip(pos, 0, t - 1)], 0.0)
        query = jnp.zeros_like(f)
    return flags.astype(jnp.float32), query, jnp.broadcast_to(jnp.asarray(valid), (b, t, slots))


def kv_windows(x: jax.Array, slots: int) -> jax.Array:
    """``(B, T, D)`` -> ``(B, T, W, D)``: rows ``t-W+1 .. t`` of every t, left-padded with zeros (12.3)."""
    b, t, d = x.shape
    padded = jnp.concatenate([jnp.zeros((b, slots - 1, d), x.dtype), x], axis=1)
    idx = np.arange(t)[:, None] + np.arange(slots)[None, :]
    return padded[:, idx]


def start_states(post_stoch: jax.Array, deter: jax.Array, post_logits: jax.Array, kv, is_first: jax.Array,
                 *, slots: int = 8, flag_shift: bool = True) -> StartState:
    """Every (b, t) of a world-model pass as an imagination start (docs/original.md §5.1), flattened ``N = B*T``.

    Args:
      post_stoch: ``(B, T, S, C)``; deter: ``(B, T, D)``; post_logits: ``(B, T, S, C)``.
      kv: tuple per block of ``(k, v)`` each ``(B, T, D)`` (`TSSM.observe`'s ``kv``).
      is_first: ``(B, T)``.
      slots: W (= ``model.context``).
      flag_shift: ``quirks.imagination_flag_shift`` (see `window_flags`).

    Returns:
      `StartState` with row ``b*T + t``, everything stop-gradiented. The cache's validity mask
      marks the zero left-padding (positions < 0); with `flag_shift` the original's leading flag
      hides that padding too, so the masks equal the original's either way.
    """
    b, t = is_first.shape
    n = b * t
    flags, query, valid = window_flags(is_first, slots, flag_shift)
    flat = lambda x: sg(x.reshape((n,) + x.shape[2:]))
    cache = KVCache(k=tuple(flat(kv_windows(k, slots)) for k, _ in kv),
                    v=tuple(flat(kv_windows(v, slots)) for _, v in kv),
                    flags=flat(flags), valid=flat(valid))
    return StartState(stoch=flat(post_stoch), deter=flat(deter), logits=flat(post_logits), cache=cache,
                      query_flag=flat(query))


def imagine(model: TSSM, act: Callable[[jax.Array, Any], jax.Array], start: StartState, policy_noise: Any,
            prior_gumbel: jax.Array) -> dict:
    """H-step imagination roll-out (docs/original.md §5.2) with the world model in eval mode (no dropout).

    Per step h = 0..H-1: ``a_h = act(sg(feat(s_h)), noise_h)``; ``s_{h+1} = step(s_h.stoch, a_h)``
    with the stoch of ``s_{h+1}`` the prior sample from ``prior_gumbel[:, h]``; finally
    ``a_H = act(sg(feat(s_H)), noise_H)``. The episode mask is always applied in imagination
    (docs/original.md §3.6.5); after each step the cache flags shift left, the query flag is appended and the
    next query flag is 0.

    Args:
      model: the TSSM.
      act: ``act(feat (N, S*C + D), noise) -> action (N, A)``.
      start: `StartState` (N rows).
      policy_noise: pytree whose leaves have leading axes ``(N, H + 1)`` (noise of the actions of
        states 0..H).
      prior_gumbel: ``(N, H, S, C)``.

    Returns:
      dict with ``stoch (N, H+1, S, C)``, ``deter (N, H+1, D)``, ``logits (N, H+1, S, C)`` (state 0:
      the start's posterior logits), ``action (N, H+1, A)``, ``feat (N, H+1, S*C + D)`` and
      ``masks`` bool ``(N, H, 1, W + 1)``.
    """
    horizon = prior_gumbel.shape[1]
    tm = lambda x: jnp.swapaxes(x, 0, 1)
    noise_steps = jax.tree_util.tree_map(lambda x: tm(x[:, :horizon]), policy_noise)
    noise_last = jax.tree_util.tree_map(lambda x: x[:, horizon], policy_noise)

    def body(carry, xs):
        stoch, deter, cache, qf = carry
        noise, g = xs
        a = act(sg(features(stoch, deter)), noise)
        out = model.step(stoch, a, cache, qf, g, episode_mask_gating=False, deterministic=True)
        new = (out["prior_stoch"], out["deter"], out["cache"], jnp.zeros_like(qf))
        return new, (a, out["prior_stoch"], out["deter"], out["prior_logits"], out["mask"])

    carry0 = (start.stoch.astype(jnp.float32), start.deter.astype(jnp.float32), start.cache,
              start.query_flag.astype(jnp.float32))
    (stoch_h, deter_h, _, _), (acts, stochs, deters, logits, masks) = jax.lax.scan(
        body, carry0, (noise_steps, tm(prior_gumbel)))
    a_last = act(sg(features(stoch_h, deter_h)), noise_last)
    cat = lambda first, seq: jnp.concatenate([first[:, None], tm(seq)], axis=1)
    stoch = cat(start.stoch.astype(jnp.float32), stochs)
    deter = cat(start.deter.astype(jnp.float32), deters)
    return {"stoch": stoch, "deter": deter, "logits": cat(start.logits.astype(jnp.float32), logits),
            "action": jnp.concatenate([tm(acts), a_last[:, None]], axis=1),
            "feat": features(stoch, deter), "masks": tm(masks)}
