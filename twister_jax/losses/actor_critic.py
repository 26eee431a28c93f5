"""Returns, return normaliser, actor and critic losses of learning in imagination (docs/original.md §5.3-5.8).

Pure functions; no networks. The losses take the *outputs* of the policy / value heads (raw
policy output, value logits), so the train step differentiates them through its own apply
functions::

    def actor_obj(policy_params):
        raw = policy_apply(policy_params, sg(feat[:, :H]))
        return actor_loss(raw, actions[:, :H], adv, weights[:, :H], dist=dist, entropy_scale=eta)
    jax.value_and_grad(actor_obj, has_aux=True)(policy_params)

Shapes (batch-major; N imagined trajectories = B*T start states, H horizon): quantities of
imagined states ``s_0 .. s_H`` are ``(N, H+1)``; returns, advantages and everything the losses
average over are ``(N, H)`` for states ``s_0 .. s_{H-1}``. A trailing singleton axis, as the
golden fixtures store, passes through the elementwise functions (returns, weights, normaliser)
unchanged; the two losses want ``(N, H)`` exactly (squeeze first).

Stop-gradients (docs/original.md §5.6, §5.8; golden case ``actor_critic_grads``): the actor loss differentiates
only ``log pi(a | sg(feat))`` and the entropy (actions, advantages, weights are constants); the
critic loss only ``log p_v(. | sg(feat))`` (returns, slow-critic targets, weights are constants).
Both apply `jax.lax.stop_gradient` to those constants themselves, so a caller cannot leak a gradient.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

import flax.struct
import jax
import jax.numpy as jnp

from twister_jax import distributions

if TYPE_CHECKING:
    from twister_jax.policy_dist import PolicyDist

sg = jax.lax.stop_gradient


# ---------------------------------------------------------------------------- weights, returns
def discounts_and_weights(continues: jax.Array, gamma: float):
    """Per-step discounts and loss weights from continues (docs/original.md §5.3).

    Args:
      continues: ``(N, H+1, ...)`` continues of states ``s_0 .. s_H``; ``c_0`` is the replayed
        ``1 - done`` of the start state, ``c_i`` (i >= 1) the continue head's mode.
      gamma: discount (``ac.gamma``).

    Returns:
      ``(discounts (N, H, ...), weights (N, H+1, ...))``: ``discounts = gamma * c_{1..H}`` (the
      returns' discounts) and ``weights = cumprod(gamma * c) / gamma``, i.e. ``w_0 = c_0``,
      ``w_i = gamma^i c_0 ... c_i``; both stop-gradiented.
    """
    gc = gamma * sg(jnp.asarray(continues, jnp.float32))
    weights = jnp.cumprod(gc, axis=1) / gamma
    return gc[:, 1:], weights


def lambda_returns(rewards: jax.Array, values: jax.Array, discounts: jax.Array, lambda_: float,
                   bootstrap: jax.Array | None = None) -> jax.Array:
    """TD(lambda) returns over the time axis 1 (docs/original.md §5.4).

    Index t of the inputs is imagined state ``s_{t+1}`` (t = 0 .. H-1)::

        returns[t] = rewards[t] + discounts[t] * ((1 - lambda) * values[t] + lambda * returns[t+1])
        returns[H] := bootstrap   (default values[:, H-1], i.e. v_H)

    Args:
      rewards: ``(N, H, ...)`` ``r_1 .. r_H``.
      values: ``(N, H, ...)`` ``v_1 .. v_H`` (the online critic's means).
      discounts: ``(N, H, ...)`` ``gamma * c_1 .. gamma * c_H``.
      lambda_: ``ac.lambda_`` (0.95).
      bootstrap: ``(N, ...)`` value after the last step; defaults to ``values[:, -1]``.

    Returns:
      ``(N, H, ...)`` float32 returns ``R_0 .. R_{H-1}``. Not stop-gradiented (the callers do).
    """
    rewards, values, discounts = (jnp.asarray(x, jnp.float32) for x in (rewards, values, discounts))
    last = values[:, -1] if bootstrap is None else jnp.asarray(bootstrap, jnp.float32)

    def step(next_ret, xs):
        r, v, d = xs
        ret = r + d * ((1.0 - lambda_) * v + lambda_ * next_ret)
        return ret, ret

    xs = tuple(jnp.moveaxis(x, 1, 0) for x in (rewards, values, discounts))
    _, rets = jax.lax.scan(step, last, xs, reverse=True)
    return jnp.moveaxis(rets, 0, 1)


# ---------------------------------------------------------------------------- return normaliser
@flax.struct.dataclass
class ReturnNormState:
    """EMA of the 5% / 95% return percentiles (docs/original.md §5.5); float32 scalars, init 0 (no bias correction).

    Lives in the train state; the original keeps the same two numbers as buffers ``perc_low`` /
    ``perc_high``.
    """
    low: jax.Array
    high: jax.Array


def init_return_norm() -> ReturnNormState:
    """Initial normaliser state ``[0, 0]``, as the original's buffers."""
    return ReturnNormState(low=jnp.zeros((), jnp.float32), high=jnp.zeros((), jnp.float32))


def return_quantiles(returns: jax.Array, low_q: float = 0.05, high_q: float = 0.95):
    """Linear-interpolation quantiles of all returns (flattened; stop-gradiented): ``(lo, hi)`` scalars."""
    flat = sg(jnp.asarray(returns, jnp.float32)).reshape(-1)
    qs = jnp.quantile(flat, jnp.asarray([low_q, high_q], jnp.float32), method="linear")
    return qs[0], qs[1]


def update_return_norm(state: ReturnNormState, returns: jax.Array, *, decay: float = 0.99,
                       low_q: float = 0.05, high_q: float = 0.95):
    """One EMA update from a batch of returns (docs/original.md §5.5), once per gradient step.

    ``low <- decay * low + (1 - decay) * quantile(R, low_q)``, same for ``high``.

    Under `jax.jit` with the returns sharded over devices, `jnp.quantile` sees the global batch, as
    the original's single-device quantile does.

    Returns:
      ``(new_state, (lo, hi))`` with the batch quantiles ``lo``, ``hi`` for logging.
    """
    lo, hi = return_quantiles(returns, low_q, high_q)
    new = ReturnNormState(low=decay * state.low + (1.0 - decay) * lo,
                          high=decay * state.high + (1.0 - decay) * hi)
    return new, (lo, hi)


def return_norm_offset_invscale(state: ReturnNormState, limit: float = 1.0):
    """``(offset, invscale)`` = ``(low, max(high - low, 1 / limit))`` (docs/original.md §5.5).

    ``invscale`` is a divisor despite its name (the original's naming). Ambiguous: docs/original.md §5.5 writes
    ``max(P_hi - P_lo, 1.0)`` with ``return_norm_limit = 1`` and the fixture ``max(.., 1/limit)``;
    we follow the fixture (DreamerV3's ``Moments``: ``max(1 / max, high - low)``); identical at 1.
    """
    return state.low, jnp.maximum(state.high - state.low, 1.0 / limit)


def advantages(returns: jax.Array, values: jax.Array, offset: jax.Array, invscale: jax.Array) -> jax.Array:
    """Normalised advantage ``(R - offset)/invscale - (v - offset)/invscale`` (stop-gradiented), ``(N, H)``.

    Written as the original computes it (not ``(R - v)/invscale``), to keep its rounding.
    """
    returns, values = sg(returns), sg(values)
    return sg((returns - offset) / invscale - (values - offset) / invscale)


def imagination_targets(rewards: jax.Array, values: jax.Array, continues: jax.Array,
                        norm_state: ReturnNormState, *, gamma: float, lambda_: float,
                        decay: float = 0.99, low_q: float = 0.05, high_q: float = 0.95,
                        limit: float = 1.0):
    """Everything between the imagined heads and the two losses (docs/original.md §5.3-5.5), stop-gradiented.

    Args:
      rewards, values, continues: ``(N, H+1)`` (or with a trailing singleton) for states
        ``s_0 .. s_H``: reward-head means, online-critic means, continues (``c_0`` replayed, the
        rest the continue head's mode). ``rewards[:, 0]`` is unused.
      norm_state: normaliser state before this step.
      gamma, lambda_, decay, low_q, high_q, limit: ``ac.gamma``, ``ac.lambda_``,
        ``ac.retnorm_decay``, ``ac.retnorm_low``, ``ac.retnorm_high``, ``ac.retnorm_limit``.

    Returns:
      ``(new_norm_state, out)``; ``out`` holds ``discounts (N, H)``, ``weights (N, H+1)``,
      ``returns (N, H)``, ``advantages (N, H)``, ``offset``, ``invscale``, ``quantile_low``,
      ``quantile_high``. The losses use ``weights[:, :H]``.
    """
    rewards, values = sg(jnp.asarray(rewards, jnp.float32)), sg(jnp.asarray(values, jnp.float32))
    discounts, weights = discounts_and_weights(continues, gamma)
    returns = sg(lambda_returns(rewards[:, 1:], values[:, 1:], discounts, lambda_))
    new_state, (lo, hi) = update_return_norm(norm_state, returns, decay=decay, low_q=low_q, high_q=high_q)
    offset, invscale = return_norm_offset_invscale(new_state, limit)
    adv = advantages(returns, values[:, :-1], offset, invscale)
    return new_state, dict(discounts=discounts, weights=weights, returns=returns, advantages=adv,
                           offset=offset, invscale=invscale, quantile_low=lo, quantile_high=hi)


# -------------------------------------------------------------------------------------- losses
def actor_loss(policy_raw: jax.Array, actions: jax.Array, advantage: jax.Array, weights: jax.Array,
               *, dist: PolicyDist, entropy_scale: float = 3e-4):
    """REINFORCE actor loss for both action types (docs/original.md §5.6).

    ``L = -mean_{n,i} w_i [log pi(a_i | s_i) * adv_i + eta * H(pi(. | s_i))]``.

    Args:
      policy_raw: ``(N, H, A)`` logits or ``(N, H, 2A)`` raw outputs of the policy applied to
        ``sg(feat(s_0 .. s_{H-1}))`` -- the only differentiated input.
      actions: ``(N, H, A)`` sampled actions ``a_0 .. a_{H-1}`` (stop-gradiented here).
      advantage: ``(N, H)`` (stop-gradiented here).
      weights: ``(N, H)`` = ``weights[:, :H]`` of `imagination_targets` (stop-gradiented here).
      dist: the policy family.
      entropy_scale: eta (``ac.entropy``).

    Returns:
      ``(loss scalar, aux)`` with ``aux = {log_prob (N, H), entropy (N, H)}``.
    """
    log_prob = dist.log_prob(policy_raw, sg(actions))
    entropy = dist.entropy(policy_raw)
    adv, w = sg(advantage), sg(weights)
    loss = -jnp.mean(w * (log_prob * adv + entropy_scale * entropy))
    return loss, dict(log_prob=log_prob, entropy=entropy)


def critic_loss(value_logits: jax.Array, returns: jax.Array, slow_values: jax.Array, weights: jax.Array,
                *, reg_scale: float = 1.0, bins_range: float = 20.0, log_prob_fn: Callable | None = None):
    """Two-hot critic loss with the slow-critic regulariser (docs/original.md §5.8).

    ``L = -mean_{n,i} w_i [log p_v(sg(R_i) | s_i) + reg * log p_v(sg(mode(v_target(s_i))) | s_i)]``.

    Args:
      value_logits: ``(N, H, bins)`` value-head logits on ``sg(feat(s_0 .. s_{H-1}))`` -- the only
        differentiated input.
      returns: ``(N, H)`` lambda returns (stop-gradiented here).
      slow_values: ``(N, H)`` slow critic's mean (two-hot mode) on the same states (stop-gradiented).
      weights: ``(N, H)`` (stop-gradiented here).
      reg_scale: ``ac.slow_critic_reg``.
      bins_range: ``model.bins_range`` (bins on ``[-range, range]`` in symlog space; their number
        is the logits' last axis).
      log_prob_fn: ``(logits (..., bins), target (...)) -> (...)``; defaults to the symlog two-hot
        log-probability `twister_jax.distributions.twohot_log_prob` with `bins_range`.

    Returns:
      ``(loss scalar, aux)`` with ``aux = {log_prob_returns, log_prob_slow}`` (both ``(N, H)``).
    """
    if log_prob_fn is None:
        log_prob_fn = functools.partial(distributions.twohot_log_prob, bins_range=bins_range)
    value_logits = jnp.asarray(value_logits, jnp.float32)
    returns, slow_values, w = sg(returns), sg(slow_values), sg(weights)
    lp_ret = log_prob_fn(value_logits, returns)
    lp_slow = log_prob_fn(value_logits, slow_values)
    loss = -jnp.mean(w * (lp_ret + reg_scale * lp_slow))
    return loss, dict(log_prob_returns=lp_ret, log_prob_slow=lp_slow)
