"""TSSM: transformer state-space model (docs/original.md §3.6).

Pieces: action mixer (docs/original.md §3.6.2), post-norm transformer (3.6.3), prior head ``W_dyn`` (3.6.1),
learned initial state ``w_init`` (3.6.6), the teacher-forced `TSSM.observe` (3.6.7) and the one-step
`TSSM.step` (3.6.8) over a fixed-size KV cache (`KVCache`, docs/original.md §12.3).

Shapes: B batch, T time, N one-step batch, S stochastic variables, C classes, A actions, D width,
W cache slots (= ``model.context``, 8). Latents are ``(..., S, C)``; model features are
``[flatten(stoch) ; deter]``.

Ambiguous choices (written down as the conventions ask):
* ``learn_initial=False``: ``w_init`` is a constant zero vector (not a parameter); the initial latent
  is still the mode of the prior of that vector. The original's behaviour for False is not pinned.
* The cache has W = ``context`` slots; its validity mask is always applied, its episode flags follow
  the gating rule (docs/original.md §3.6.5) switched by ``episode_mask_gating`` (docs/interfaces.md §3, §7).
* `observe` always applies its episode mask: without a cache the original's gating changes nothing.
"""
from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from twister_jax import distributions
from twister_jax.networks import attention, layers, transformer

sg = jax.lax.stop_gradient


def clip_action(action: jax.Array) -> jax.Array:
    """``a * sg(1 / max(|a|, 1))``: element-wise clip to [-1, 1] with a stop-gradiented scale (3.6.1)."""
    return action * sg(1.0 / jnp.maximum(jnp.abs(action), 1.0))


# --------------------------------------------------------------------------------------------
# Action mixer (docs/original.md §3.6.2)
# --------------------------------------------------------------------------------------------

class ActionMixer(nnx.Module):
    """``LN(W2 SiLU(LN(W1 x)))``, both Dense without bias, LN eps ``ln_eps`` (docs/original.md §3.6.2)."""

    def __init__(self, in_features: int, hidden: int, *, ln_eps: float = 1e-3, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(eps=ln_eps, kernel_init=layers.dreamerv3_normal, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.layer0 = layers.DenseNormAct(in_features, hidden, act=True, **kw)
        self.layer1 = layers.DenseNormAct(hidden, hidden, act=False, **kw)

    def __call__(self, x):
        return self.layer1(self.layer0(x))


# --------------------------------------------------------------------------------------------
# Fixed-size KV cache (docs/original.md §12.3, docs/interfaces.md §3)
# --------------------------------------------------------------------------------------------

@flax.struct.dataclass
class KVCache:
    """Sliding window of the last W tokens' projected keys/values, newest last.

    Attributes:
      k, v: tuples (one per block) of ``(N, W, D)`` arrays.
      flags: float32 ``(N, W)`` episode ("first") flags of the slots (docs/original.md §3.6.5).
      valid: bool ``(N, W)``; False for slots not yet filled (always masked).
    """
    k: tuple
    v: tuple
    flags: jax.Array
    valid: jax.Array

    @classmethod
    def empty(cls, n: int, slots: int, hidden: int, blocks: int, dtype=jnp.float32) -> "KVCache":
        z = jnp.zeros((n, slots, hidden), dtype)
        return cls(k=(z,) * blocks, v=(z,) * blocks, flags=jnp.zeros((n, slots), jnp.float32),
                   valid=jnp.zeros((n, slots), bool))

    def invalidate(self, where: jax.Array) -> "KVCache":
        """Marks every slot of the rows ``where (N,)`` unfilled (e.g. a new evaluation episode)."""
        keep = jnp.logical_not(jnp.asarray(where, bool))[:, None]
        return self.replace(valid=self.valid & keep, flags=jnp.where(keep, self.flags, 0.0))


# --------------------------------------------------------------------------------------------
# TSSM
# --------------------------------------------------------------------------------------------

class TSSM(nnx.Module):
    """Transformer state-space model (docs/original.md §3.6).

    Constructor arguments map from config keys: hidden, heads, blocks, ff_ratio, context, max_pos,
    dropout, transformer_ln_eps, ln_eps, stoch, discrete, unimix, learn_initial (``model.*``) and
    ``env.num_actions``; see `TSSM.from_config`.
    """

    def __init__(self, num_actions: int, *, stoch: int = 32, discrete: int = 32, hidden: int = 512,
                 heads: int = 8, blocks: int = 4, ff_ratio: int = 2, context: int = 8,
                 max_pos: int = 2048, dropout: float = 0.1, transformer_ln_eps: float = 1e-6,
                 ln_eps: float = 1e-3, unimix: float = 0.01, learn_initial: bool = True,
                 mode_st_logprob: bool = True, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.num_actions, self.stoch, self.discrete, self.hidden = num_actions, stoch, discrete, hidden
        self.num_blocks, self.context, self.unimix = blocks, context, unimix
        self.learn_initial, self.mode_st_logprob, self.dtype = learn_initial, mode_st_logprob, dtype
        self.action_mixer = ActionMixer(stoch * discrete + num_actions, hidden, ln_eps=ln_eps, dtype=dtype,
                                        param_dtype=param_dtype, rngs=rngs)
        self.transformer = transformer.Transformer(hidden, heads, blocks, ff_ratio=ff_ratio, dropout=dropout,
                                                   ln_eps=transformer_ln_eps, max_pos=max_pos, dtype=dtype,
                                                   param_dtype=param_dtype, rngs=rngs)
        self.dynamics_predictor = nnx.Linear(hidden, stoch * discrete, kernel_init=layers.xavier_uniform,
                                             bias_init=layers.zeros, dtype=dtype,
                                             param_dtype=param_dtype, rngs=rngs)
        w = jnp.zeros((hidden,), param_dtype)
        self.weight_init = nnx.Param(w) if learn_initial else nnx.Variable(w)

    @classmethod
    def from_config(cls, model, num_actions: int, *, quirks=None, dtype=jnp.float32, rngs: nnx.Rngs):
        """Builds from ``config.model`` (docs/interfaces.md §2) and the action count."""
        st = True if quirks is None else bool(quirks.mode_straight_through_logprob)
        return cls(num_actions, stoch=model.stoch, discrete=model.discrete, hidden=model.hidden,
                   heads=model.heads, blocks=model.blocks, ff_ratio=model.ff_ratio, context=model.context,
                   max_pos=model.max_pos, dropout=model.dropout, transformer_ln_eps=model.transformer_ln_eps,
                   ln_eps=model.ln_eps, unimix=model.unimix, learn_initial=model.learn_initial,
                   mode_st_logprob=st, dtype=dtype, rngs=rngs)

    # ---------------------------------------------------------------- small pieces
    def prior_logits(self, deter: jax.Array) -> jax.Array:
        """``W_dyn h + b`` -> float32 ``(..., S, C)``."""
        out = self.dynamics_predictor(deter.astype(self.dtype)).astype(jnp.float32)
        return out.reshape(deter.shape[:-1] + (self.stoch, self.discrete))

    def prior_sample(self, logits: jax.Array, gumbel: jax.Array) -> jax.Array:
        """Straight-through unimix sample from recorded/drawn Gumbel noise, ``(..., S, C)``."""
        return distributions.onehot_sample(logits, gumbel, self.unimix)

    def initial_state(self, detach: bool = False):
        """Learned initial state (docs/original.md §3.6.6).

        Returns:
          ``(stoch (S, C), deter (D,), logits (S, C) zeros)``; stoch = mode of the prior of
          ``w_init`` with the straight-through term on log-probabilities (gradient reaches ``w_init``
          and the prior head unless `detach`).
        """
        w = self.weight_init[...].astype(jnp.float32)
        stoch = distributions.onehot_mode(self.prior_logits(w), self.unimix, self.mode_st_logprob)
        if detach:
            stoch, w = sg(stoch), sg(w)
        return stoch, w, jnp.zeros((self.stoch, self.discrete), jnp.float32)

    def mix(self, prev_stoch: jax.Array, action: jax.Array) -> jax.Array:
        """Mixer token from ``prev_stoch (..., S, C)`` and ``action (..., A)`` (clipped): ``(..., D)``."""
        flat = prev_stoch.reshape(prev_stoch.shape[:-2] + (self.stoch * self.discrete,))
        x = jnp.concatenate([flat.astype(jnp.float32), clip_action(action.astype(jnp.float32))], axis=-1)
        return self.action_mixer(x.astype(self.dtype))

    # ---------------------------------------------------------------- observe
    def observe(self, post_stoch: jax.Array, actions: jax.Array, is_first: jax.Array,
                gumbel: Optional[jax.Array] = None, *, key: Optional[jax.Array] = None,
                deterministic: bool = True, return_aux: bool = False) -> dict:
        """Teacher-forced pass over windows, no cache (docs/original.md §3.6.7).

        Args:
          post_stoch: ``(B, T, S, C)`` posterior samples ``z_t``.
          actions: ``(B, T, A)`` stored actions (record t holds ``a_{t-1}``, the action that led to
            ``o_t``); the input is not modified (docs/quirks.md §10.17): zeroing at t=0 and resets is local.
          is_first: ``(B, T)`` bool or 0/1.
          gumbel: optional ``(B, T, S, C)`` Gumbel noise for the prior samples.
          key: dropout key; deterministic: no dropout when True.
          return_aux: add ``mixer_input``, ``mixer_output``, ``mask``, ``block_outputs``,
            ``initial_stoch``, ``initial_deter``.

        Returns:
          dict with ``deter (B, T, D)`` float32, ``prior_logits (B, T, S, C)``, ``prior_stoch``
          (when `gumbel` is given) and ``kv``: tuple per block of ``(k, v)`` each ``(B, T, D)``
          (stop-gradiented).
        """
        b, t = is_first.shape
        first = jnp.asarray(is_first) > 0
        reset = first.at[:, 0].set(True)                                       # t = 0 always starts fresh
        init_stoch, init_deter, _ = self.initial_state()
        prev = jnp.concatenate([jnp.zeros_like(post_stoch[:, :1]), post_stoch[:, :-1]], axis=1)
        prev = jnp.where(reset[..., None, None], init_stoch.astype(prev.dtype), prev)
        acts = jnp.where(reset[..., None], 0.0, actions.astype(jnp.float32))
        flat = prev.reshape(b, t, self.stoch * self.discrete).astype(jnp.float32)
        mixer_input = jnp.concatenate([flat, clip_action(acts)], axis=-1)
        tokens = self.action_mixer(mixer_input.astype(self.dtype))
        mask = attention.combine_masks(attention.context_mask(t, 0, self.context),
                                       attention.episode_mask(first), True)
        h, kvs, aux = self.transformer(tokens, mask, key=key, deterministic=deterministic, return_aux=True)
        logits = self.prior_logits(h)
        out = {"deter": h, "prior_logits": logits, "kv": kvs}
        if gumbel is not None:
            out["prior_stoch"] = self.prior_sample(logits, gumbel)
        if return_aux:
            out.update(mixer_input=mixer_input, mixer_output=tokens, mask=mask,
                       block_outputs=aux["block_outputs"], initial_stoch=init_stoch, initial_deter=init_deter)
        return out

    # ---------------------------------------------------------------- one step
    def empty_cache(self, n: int) -> KVCache:
        """All-invalid cache for `n` sequences (start of training / of every evaluation episode)."""
        return KVCache.empty(n, self.context, self.hidden, self.num_blocks, self.dtype)

    def step(self, prev_stoch: jax.Array, action: jax.Array, cache: KVCache, query_flag: jax.Array,
             gumbel: Optional[jax.Array] = None, *, episode_mask_gating: bool = True,
             key: Optional[jax.Array] = None, deterministic: bool = True) -> dict:
        """One-step transition over the fixed W-slot cache (docs/original.md §3.6.8).

        No reset logic: callers substitute the initial latent / zero action at resets
        (`reset_inputs`).

        Args:
          prev_stoch: ``(N, S, C)``; action: ``(N, A)`` (clipped here).
          cache: `KVCache` with W slots (newest last).
          query_flag: ``(N,)`` episode flag of the new token (is_first).
          gumbel: optional ``(N, S, C)`` noise for the prior sample.
          episode_mask_gating: True = the original's gating: the episode mask (cache flags and
            query flag) is applied only when some ``query_flag`` in the batch is set; False = always
            applied (imagination always applies it). The validity mask is always applied.
          key, deterministic: dropout.

        Returns:
          dict with ``deter (N, D)``, ``prior_logits (N, S, C)``, ``prior_stoch`` (with `gumbel`),
          ``cache`` (shifted left by one, new k/v/flag appended, slot marked valid) and
          ``mask`` bool ``(N, 1, W + 1)`` (keys = W slots + the new token).
        """
        n = prev_stoch.shape[0]
        w = cache.flags.shape[1]
        qf = jnp.asarray(query_flag).astype(jnp.float32).reshape(n)
        token = self.mix(prev_stoch, action)[:, None]                          # (N, 1, D)
        gate = jnp.any(qf > 0) if episode_mask_gating else True
        valid = jnp.concatenate([cache.valid, jnp.ones((n, 1), bool)], axis=1)
        mask = attention.combine_masks(attention.context_mask(1, w, self.context),
                                       attention.episode_mask(qf[:, None], cache.flags), gate, valid)
        caches = list(zip(cache.k, cache.v))
        h, kvs = self.transformer(token, mask, caches, key=key, deterministic=deterministic)
        h = h[:, 0]
        logits = self.prior_logits(h)
        # the cache keeps its own dtype (a fixed carry for scans and donated acting states)
        new_cache = KVCache(k=tuple(k[:, 1:].astype(old.dtype) for (k, _), old in zip(kvs, cache.k)),
                            v=tuple(v[:, 1:].astype(old.dtype) for (_, v), old in zip(kvs, cache.v)),
                            flags=jnp.concatenate([cache.flags[:, 1:], qf[:, None]], axis=1),
                            valid=valid[:, 1:])
        out = {"deter": h, "prior_logits": logits, "cache": new_cache, "mask": mask[:, 0]}
        if gumbel is not None:
            out["prior_stoch"] = self.prior_sample(logits, gumbel)
        return out

    def reset_inputs(self, prev_stoch: jax.Array, action: jax.Array, is_first: jax.Array):
        """Where ``is_first (N,)``: prev latent := initial latent (detached), prev action := 0."""
        init_stoch, _, _ = self.initial_state(detach=True)
        f = jnp.asarray(is_first) > 0
        stoch = jnp.where(f[:, None, None], init_stoch.astype(prev_stoch.dtype), prev_stoch)
        return stoch, jnp.where(f[:, None], jnp.zeros_like(action), action)


def features(stoch: jax.Array, deter: jax.Array) -> jax.Array:
    """Model features ``[flatten(stoch) ; deter]`` ``(..., S*C + D)`` (docs/original.md §3.6.1)."""
    flat = stoch.reshape(stoch.shape[:-2] + (stoch.shape[-2] * stoch.shape[-1],))
    return jnp.concatenate([flat.astype(jnp.float32), deter.astype(jnp.float32)], axis=-1)
