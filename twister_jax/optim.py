"""The three optimisers and the slow-critic EMA (docs/original.md §6.1, §5.8, §12.1).

Each parameter group (world model, actor, critic) has its own
``optax.chain(clip_by_global_norm(clip), adam(lr, b1=0.9, b2=0.999, eps))``: plain bias-corrected
Adam with ``eps`` added to ``sqrt(v_hat)``, constant learning rate, no weight decay, clipping the
group's global L2 norm first. The original's ``clip_grad_norm_`` scales by ``clip / (norm + 1e-6)``
where optax uses ``clip / norm``: equal up to that 1e-6 (docs/original.md §6.1), and only when clipping bites.

The slow critic ``v_target`` is a separate parameter tree, updated after every critic step by
``theta_tgt <- (1 - rate) theta_tgt + rate theta`` (rate ``ac.slow_critic_rate`` = 0.02).
"""
from __future__ import annotations

import optax

GROUPS = ("world_model", "actor", "critic")


def make_optimizer(lr: float, eps: float, clip: float) -> optax.GradientTransformation:
    """``clip_by_global_norm(clip)`` then ``adam(lr, b1=0.9, b2=0.999, eps=eps)``."""
    return optax.chain(optax.clip_by_global_norm(float(clip)),
                       optax.adam(float(lr), b1=0.9, b2=0.999, eps=float(eps)))


def make_optimizers(config) -> dict[str, optax.GradientTransformation]:
    """The three chains from ``config.optim.{world_model,actor,critic}.{lr,eps,clip}``.

    Returns:
      ``{"world_model": tx, "actor": tx, "critic": tx}``.
    """
    return {name: make_optimizer(config.optim[name].lr, config.optim[name].eps, config.optim[name].clip)
            for name in GROUPS}


def slow_critic_update(slow_params, critic_params, rate: float = 0.02):
    """One EMA step of the slow critic: ``(1 - rate) * slow + rate * critic``, leaf by leaf.

    Args:
      slow_params: the slow critic's parameter pytree.
      critic_params: the (just updated) online critic's parameters, same structure.
      rate: ``ac.slow_critic_rate``.

    Returns:
      The new slow-critic pytree.
    """
    return optax.incremental_update(critic_params, slow_params, step_size=rate)
