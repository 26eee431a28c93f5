"""One gradient step of the agent (docs/original.md §5, §7.2): the world-model, actor and critic updates.

Each update is one call of `apply_update` (loss -> gradients -> Optax update -> new parameters) on
its own loss; `train_step` chains them in the original's order (docs/original.md §7.2, docs/quirks.md §10.12):

  1. `world_model_update`: world-model loss and Adam step; the imagination start states (KV windows,
     flags) come from this forward pass, i.e. from the pre-update parameters, with its dropout noise
     (10.13);
  2. `imagine_and_targets` with the *updated* world model (eval mode) and the pre-update actor;
     rewards and continues from the updated heads, values from the pre-update critic; lambda returns;
     return normaliser update; then `actor_update` (REINFORCE loss and Adam step);
  3. `critic_update` on the same imagined states against the slow critic; 4. slow-critic EMA.

Every function is pure in (parameters / state, batch, key); the static parts (graph definitions,
optimisers, policy distribution, config) come in `spec`, an `agent.AgentSpec` bound before `jax.jit`.

Keys: the step uses ``fold_in(base, state.step)`` and one `fold_in` per purpose, so a resumed run
draws the same numbers (docs/interfaces.md §4).

Shapes: B batch, T time, N = B*T start states, H horizon, S, C latent, D width, A actions,
F = S*C + D features.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from twister_jax import imagination, optim
from twister_jax.distributions import twohot_log_prob, twohot_mean
from twister_jax.losses import actor_critic as ac_lib
from twister_jax.losses import world_model as wm_loss
from twister_jax.policy_dist import PolicyDist

sg = jax.lax.stop_gradient

# fold_in purposes of a gradient step's key
_WM_NOISE, _WM_DROPOUT, _IMAGINE = 0, 1, 2


class Update(NamedTuple):
    """Result of one `apply_update`: new ``params`` and ``opt_state``, the scalar ``loss``, the loss's
    ``aux`` and the ``grads`` (a pytree like ``params``)."""
    params: Any
    opt_state: Any
    loss: jax.Array
    aux: Any
    grads: Any


def apply_update(tx: optax.GradientTransformation, loss_fn: Callable, params, opt_state) -> Update:
    """loss -> grads -> Optax update -> apply: one optimiser step of `params`.

    Args:
      tx: the optimiser of this parameter group.
      loss_fn: ``params -> (scalar loss, aux)``.
      params, opt_state: the group's parameters and optimiser state before the step.
    """
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    return Update(optax.apply_updates(params, updates), new_opt_state, loss, aux, grads)


def world_model_update(spec, params, opt_state, batch: dict, key: jax.Array) -> Update:
    """World-model loss (docs/original.md §4) and optimiser step (docs/original.md §7.2 item 2).

    Args:
      spec: `agent.AgentSpec`.
      params, opt_state: world-model parameters and optimiser state.
      batch: image uint8 ``(B, T, 64, 64, 3)``, action ``(B, T, A)``, reward, is_first, is_terminal ``(B, T)``.
      key: the step's key (after ``fold_in(step)``).

    Returns:
      `Update`; ``aux`` is `world_model_loss`'s: ``losses``, ``metrics``, ``start`` (`StartState`,
      N rows) and ``start_cont (N,)``.
    """
    config = spec.config
    m = config.model
    b, t = batch["image"].shape[:2]
    noise = wm_loss.draw_noise(jax.random.fold_in(key, _WM_NOISE), b, t, m.stoch, m.discrete,
                               crop_scale=tuple(config.augment.crop_scale),
                               crop_ratio=tuple(config.augment.crop_ratio),
                               image_size=tuple(config.env.image_size))

    def loss_fn(wm_params):
        return wm_loss.world_model_loss(spec.world_model(wm_params), batch, noise, spec.loss_cfg,
                                        deterministic=False, dropout_key=jax.random.fold_in(key, _WM_DROPOUT))

    return apply_update(spec.txs["world_model"], loss_fn, params, opt_state)


def imagine_and_targets(wm, policy_apply, critic_apply, dist: PolicyDist, start, start_cont, retnorm,
                        key: jax.Array, config):
    """Imagination from every start state and the actor-critic targets (docs/original.md §5.2-5.5).

    Args:
      wm: `WorldModel` (the updated one; eval mode).
      policy_apply: ``feat (..., F) -> raw policy output``; critic_apply: ``feat -> value logits``.
      dist: `PolicyDist`.
      start: `imagination.StartState` with N rows; start_cont: ``(N,)`` replayed ``1 - done``.
      retnorm: `ReturnNormState` before this step.
      key: imagination key (policy noise, prior noise).
      config: full config (``imagination_horizon``, ``ac.*``).

    Returns:
      ``(new_retnorm, traj, targets)``: ``traj`` from `imagination.imagine` (stop-gradiented) plus
      ``reward``, ``value``, ``cont`` ``(N, H+1)``; ``targets`` from `imagination_targets`.
    """
    n = start.stoch.shape[0]
    horizon = config.imagination_horizon
    k_pol, k_prior = jax.random.split(key)
    pol_noise = dist.draw_noise(k_pol, (n, horizon + 1))
    prior_gumbel = jax.random.gumbel(k_prior, (n, horizon) + start.stoch.shape[1:], jnp.float32)
    act = lambda feat, noise: dist.sample(policy_apply(feat), noise)
    traj = sg(imagination.imagine(wm.tssm, act, start, pol_noise, prior_gumbel))
    feat = traj["feat"]
    reward = twohot_mean(wm.reward_logits(feat), wm.bins_range)[..., 0]
    cont_mode = (jax.nn.sigmoid(wm.continue_logits(feat)[..., 0]) > 0.5).astype(jnp.float32)
    cont = jnp.concatenate([start_cont[:, None].astype(jnp.float32), cont_mode[:, 1:]], axis=1)
    value = twohot_mean(critic_apply(feat), wm.bins_range)[..., 0]
    a = config.ac
    new_retnorm, targets = ac_lib.imagination_targets(
        reward, value, cont, retnorm, gamma=a.gamma, lambda_=a.lambda_, decay=a.retnorm_decay,
        low_q=a.retnorm_low, high_q=a.retnorm_high, limit=a.retnorm_limit)
    traj = dict(traj, reward=sg(reward), value=sg(value), cont=sg(cont))
    return new_retnorm, traj, targets


def actor_update(spec, params, opt_state, feat: jax.Array, actions: jax.Array, advantages: jax.Array,
                 weights: jax.Array) -> Update:
    """REINFORCE actor loss (docs/original.md §5.6) and optimiser step (docs/original.md §7.2 item 3).

    Args:
      spec: `agent.AgentSpec`. params, opt_state: actor parameters and optimiser state.
      feat: ``(N, H, F)`` imagined features ``s_0 .. s_{H-1}``; actions: ``(N, H, A)`` the actions taken.
      advantages, weights: ``(N, H)``.

    Returns:
      `Update`; ``aux`` holds ``log_prob``, ``entropy`` ``(N, H)``.
    """
    def loss_fn(actor_params):
        return ac_lib.actor_loss(spec.actor(actor_params)(feat), actions, advantages, weights,
                                 dist=spec.dist, entropy_scale=spec.config.ac.entropy)

    return apply_update(spec.txs["actor"], loss_fn, params, opt_state)


def critic_update(spec, params, slow_params, opt_state, feat: jax.Array, returns: jax.Array,
                  weights: jax.Array) -> Update:
    """Critic loss against the lambda returns and the slow critic's mean (docs/original.md §5.8) and optimiser step.

    Args:
      spec: `agent.AgentSpec`. params, opt_state: critic parameters and optimiser state.
      slow_params: slow-critic parameters (not updated here).
      feat: ``(N, H, F)``; returns, weights: ``(N, H)``.
    """
    bins_range = spec.config.model.bins_range
    slow_values = twohot_mean(spec.critic(slow_params)(feat), bins_range)[..., 0]

    def loss_fn(critic_params):
        return ac_lib.critic_loss(spec.critic(critic_params)(feat), returns, slow_values, weights,
                                  reg_scale=spec.config.ac.slow_critic_reg,
                                  log_prob_fn=lambda lg, y: twohot_log_prob(lg, y, bins_range))

    return apply_update(spec.txs["critic"], loss_fn, params, opt_state)


def step_metrics(wm: Update, actor: Update, critic: Update, traj: dict, targets: dict, retnorm) -> dict:
    """The step's flat dict of float32 scalars (docs/original.md §7.5)."""
    metrics = {"loss": wm.loss, **wm.aux["losses"], **wm.aux["metrics"],
               "actor": actor.loss, "value": critic.loss,
               "returns_mean": jnp.mean(targets["returns"]), "perc_low": retnorm.low,
               "perc_high": retnorm.high, "policy_ent": jnp.mean(actor.aux["entropy"]),
               "imag_reward_mean": jnp.mean(traj["reward"][:, 1:]),
               "imag_value_mean": jnp.mean(traj["value"]),
               "imag_cont_mean": jnp.mean(traj["cont"][:, 1:]),
               "grad_norm_world_model": optax.global_norm(wm.grads),
               "grad_norm_actor": optax.global_norm(actor.grads),
               "grad_norm_critic": optax.global_norm(critic.grads)}
    return {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def train_step(spec, state, batch: dict, key: jax.Array):
    """One gradient step: ``(TrainState, batch, base key) -> (TrainState, metrics)`` (module docstring).

    Args:
      spec: `agent.AgentSpec` (static; bound before `jax.jit`).
      state: `agent.TrainState`.
      batch: see `world_model_update`.
      key: the run's base key; the step folds in ``state.step``.
    """
    key = jax.random.fold_in(key, state.step)
    p, opt = state.params, state.opt_state
    horizon = spec.config.imagination_horizon

    # 1. world model (docs/original.md §7.2 item 2)
    wm = world_model_update(spec, p["world_model"], opt["world_model"], batch, key)

    # 2. actor (docs/original.md §7.2 item 3): imagination with the updated world model
    new_retnorm, traj, tgt = imagine_and_targets(
        spec.world_model(sg(wm.params)), spec.actor(p["actor"]), spec.critic(p["critic"]), spec.dist,
        wm.aux["start"], wm.aux["start_cont"], state.retnorm, jax.random.fold_in(key, _IMAGINE), spec.config)
    feat_h = traj["feat"][:, :horizon]
    weights = tgt["weights"][:, :horizon]
    actor = actor_update(spec, p["actor"], opt["actor"], feat_h, traj["action"][:, :horizon],
                         tgt["advantages"], weights)

    # 3. critic (docs/original.md §7.2 item 4) against the slow critic's mean on the same states
    critic = critic_update(spec, p["critic"], p["slow_critic"], opt["critic"], feat_h, tgt["returns"], weights)

    # 4. slow critic (docs/original.md §5.8)
    new_slow = optim.slow_critic_update(p["slow_critic"], critic.params, spec.config.ac.slow_critic_rate)

    new_state = state.replace(
        step=state.step + 1,
        params={"world_model": wm.params, "actor": actor.params, "critic": critic.params, "slow_critic": new_slow},
        opt_state={"world_model": wm.opt_state, "actor": actor.opt_state, "critic": critic.opt_state},
        retnorm=new_retnorm)
    return new_state, step_metrics(wm, actor, critic, traj, tgt, new_retnorm)
