"""Distributions of the world model and heads as pure functions (docs/original.md §3.4, §3.7, docs/quirks.md §10.5).

All computations are float32 (inputs are cast), as docs/original.md §6.2 asks of distributions.

* Unimix one-hot categorical ("OneHotDist", docs/original.md §3.4): logits ``(..., C)``;
  ``p = (1 - unimix) softmax(l) + unimix / C``, ``logp = log p``. Sampling uses the Gumbel-max rule
  with noise drawn separately (docs/interfaces.md §4): ``onehot(argmax(logp + g))`` and the straight-through
  value ``onehot + (p - sg(p))`` (bracket first, so the forward value is exactly 0/1).
* Symlog two-hot ("SymLogDiscreteDist", docs/original.md §3.7): ``bins`` centres on ``[-range, range]``.
* Bernoulli on one logit (continue head, docs/original.md §3.7).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

sg = jax.lax.stop_gradient


def gumbel(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """Gumbel(0, 1) noise for `onehot_sample` (the draw `jax.random.categorical` makes)."""
    return jax.random.gumbel(key, shape, dtype)


# ----------------------------------------------------------------------------------- symlog --

def symlog(x: jax.Array) -> jax.Array:
    """sign(x) log(1 + |x|)."""
    x = jnp.asarray(x, jnp.float32)
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: jax.Array) -> jax.Array:
    """sign(x) (exp|x| - 1)."""
    x = jnp.asarray(x, jnp.float32)
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


# ------------------------------------------------------------------------------ unimix one-hot --

def unimix_probs(logits: jax.Array, unimix: float = 0.01) -> jax.Array:
    """``(1 - unimix) softmax(l) + unimix / C`` over the last axis; ``(..., C)`` float32."""
    logits = jnp.asarray(logits, jnp.float32)
    p = jax.nn.softmax(logits, axis=-1)
    if unimix:
        p = (1.0 - unimix) * p + unimix / logits.shape[-1]
    return p


def unimix_log_probs(logits: jax.Array, unimix: float = 0.01) -> jax.Array:
    """``log p`` of `unimix_probs` (the logits of all log-probs, KLs and entropies)."""
    if not unimix:
        return jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    return jnp.log(unimix_probs(logits, unimix))


def onehot_sample(logits: jax.Array, gumbel_noise: jax.Array, unimix: float = 0.01) -> jax.Array:
    """Straight-through one-hot sample ``onehot(argmax(log p + g)) + (p - sg(p))`` (docs/original.md §3.4).

    Args:
      logits: raw logits ``(..., C)``.
      gumbel_noise: Gumbel(0,1) noise, same shape.
    Returns:
      ``(..., C)`` float32, forward value exactly one-hot; gradient that of `p`.
    """
    p = unimix_probs(logits, unimix)
    idx = jnp.argmax(jnp.log(p) + gumbel_noise, axis=-1)
    hard = jax.nn.one_hot(idx, p.shape[-1], dtype=jnp.float32)
    return hard + (p - sg(p))


def onehot_mode(logits: jax.Array, unimix: float = 0.01, st_logprob: bool = True) -> jax.Array:
    """Straight-through mode ``onehot(argmax p) + (t - sg(t))`` (docs/original.md §3.4, docs/quirks.md §10.5).

    ``t = log p`` when `st_logprob` (the reference; quirk ``mode_straight_through_logprob``),
    else ``t = p``. Forward value exactly one-hot either way.
    """
    p = unimix_probs(logits, unimix)
    hard = jax.nn.one_hot(jnp.argmax(p, axis=-1), p.shape[-1], dtype=jnp.float32)
    t = jnp.log(p) if st_logprob else p
    return hard + (t - sg(t))


def onehot_entropy(logits: jax.Array, unimix: float = 0.01, event_dims: int = 1) -> jax.Array:
    """Entropy of the unimix categorical, summed over the last `event_dims` axes (1: ``(...,C)``,
    2: ``(..., S, C)`` independent latents)."""
    p = unimix_probs(logits, unimix)
    ent = -jnp.sum(p * jnp.log(p), axis=-1)
    return jnp.sum(ent, axis=tuple(range(-(event_dims - 1), 0))) if event_dims > 1 else ent


def onehot_log_prob(logits: jax.Array, value: jax.Array, unimix: float = 0.01,
                    event_dims: int = 1) -> jax.Array:
    """``sum value * log p`` over the classes (and the latents when ``event_dims == 2``)."""
    lp = jnp.sum(jnp.asarray(value, jnp.float32) * unimix_log_probs(logits, unimix), axis=-1)
    return jnp.sum(lp, axis=tuple(range(-(event_dims - 1), 0))) if event_dims > 1 else lp


def onehot_kl(logits_p: jax.Array, logits_q: jax.Array, unimix: float = 0.01) -> jax.Array:
    """``KL(p || q) = sum_{S} sum_{C} p (log p - log q)`` for latents ``(..., S, C)`` -> ``(...)``.

    Stop-gradients are the caller's business (docs/original.md §3.8: `kl_dyn` passes ``sg(post)``,
    `kl_rep` ``sg(prior)``).
    """
    p = unimix_probs(logits_p, unimix)
    lp, lq = jnp.log(p), unimix_log_probs(logits_q, unimix)
    return jnp.sum(p * (lp - lq), axis=(-2, -1))


def kl_free_nats(kl: jax.Array, free_nats: float = 1.0) -> jax.Array:
    """``max(kl, free_nats)`` per element (docs/original.md §3.8; the mean is the caller's)."""
    return jnp.maximum(kl, free_nats)


# --------------------------------------------------------------------------------- two-hot --

def twohot_bins(bins: int = 255, bins_range: float = 20.0) -> jax.Array:
    """``linspace(-range, range, bins)`` in float32 (symlog space)."""
    return jnp.linspace(-bins_range, bins_range, bins, dtype=jnp.float32)


def twohot_probs(logits: jax.Array) -> jax.Array:
    return jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)


def twohot_mean(logits: jax.Array, bins_range: float = 20.0) -> jax.Array:
    """``symexp(sum softmax(l) * bins)``: logits ``(..., bins)`` -> ``(..., 1)`` (= mode)."""
    b = twohot_bins(logits.shape[-1], bins_range)
    return symexp(jnp.sum(twohot_probs(logits) * b, axis=-1, keepdims=True))


twohot_mode = twohot_mean


def twohot_target(y: jax.Array, bins: int = 255, bins_range: float = 20.0) -> jax.Array:
    """Two-hot encoding of ``symlog(y)``: ``(...)`` raw values -> ``(..., bins)`` weights.

    below = (#bins <= s) - 1, above = bins - (#bins > s), both clipped to [0, bins-1];
    if equal, weight 1 there; else weight_below = |b_above - s| / (|b_below - s| + |b_above - s|).
    """
    b = twohot_bins(bins, bins_range)
    s = symlog(y)[..., None]
    below = jnp.clip(jnp.sum((b <= s).astype(jnp.int32), axis=-1) - 1, 0, bins - 1)
    above = jnp.clip(bins - jnp.sum((b > s).astype(jnp.int32), axis=-1), 0, bins - 1)
    s = s[..., 0]
    equal = below == above
    d_below = jnp.abs(b[below] - s)
    d_above = jnp.abs(b[above] - s)
    total = jnp.where(equal, 1.0, d_below + d_above)
    w_below = jnp.where(equal, 1.0, d_above / total)
    w_above = jnp.where(equal, 0.0, d_below / total)
    return (jax.nn.one_hot(below, bins, dtype=jnp.float32) * w_below[..., None]
            + jax.nn.one_hot(above, bins, dtype=jnp.float32) * w_above[..., None])


def twohot_log_prob(logits: jax.Array, y: jax.Array, bins_range: float = 20.0) -> jax.Array:
    """``sum_i twohot(symlog(y))_i log_softmax(l)_i``.

    Args:
      logits: ``(..., bins)``.
      y: raw-unit targets ``(...)`` or ``(..., 1)`` (a trailing 1 is squeezed, as the reference's
        ``(..., 1)`` targets).
    Returns:
      ``(...)`` float32.
    """
    logits = jnp.asarray(logits, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    if y.ndim == logits.ndim and y.shape[-1] == 1:
        y = y[..., 0]
    target = sg(twohot_target(y, logits.shape[-1], bins_range))
    return jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1)


# ------------------------------------------------------------------------------- Bernoulli --

def bernoulli_probs(logits: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(jnp.asarray(logits, jnp.float32))


def bernoulli_mode(logits: jax.Array) -> jax.Array:
    """``1[sigmoid(x) > 0.5]`` as float32."""
    return (bernoulli_probs(logits) > 0.5).astype(jnp.float32)


def bernoulli_log_prob(logits: jax.Array, c: jax.Array) -> jax.Array:
    """``-softplus(-x) c - softplus(x) (1 - c)`` summed over the last axis: ``(..., 1)`` -> ``(...)``."""
    x = jnp.asarray(logits, jnp.float32)
    c = jnp.asarray(c, jnp.float32)
    return jnp.sum(-jax.nn.softplus(-x) * c - jax.nn.softplus(x) * (1.0 - c), axis=-1)
