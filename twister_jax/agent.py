"""The agent's device functions: `init_state`, `train_step`, `policy_step` (spec 5, 6, 7.2, 7.3).

`make_agent(config)` builds the networks once, splits them into static graph definitions (closed
over) and parameter pytrees (in the `TrainState`), and returns an `Agent` of jitted pure functions:

    agent = make_agent(config)
    state = agent.init_state(jax.random.key(config.seed))
    state, metrics = agent.train_step(state, batch, base_key)       # state donated
    act_state = agent.init_act_state(num_envs)
    act_state, action = agent.policy_step(state.params, act_state, image, is_first, key, greedy=False)

One gradient step, in the original's order (spec 7.2, 10.12):
  1. world-model loss and Adam step; the imagination start states (KV windows, flags) come from this
     forward pass, i.e. from the pre-update parameters, with its dropout noise (10.13);
  2. imagination with the *updated* world model (eval mode) and the pre-update actor; rewards and
     continues from the updated heads, values from the pre-update critic; lambda returns; return
     normaliser update; REINFORCE actor loss and Adam step;
  3. critic loss on the same imagined states and Adam step; 4. slow-critic EMA.

Keys: the loop passes one base key; the step uses ``fold_in(base, state.step)`` and one `fold_in` per
purpose, so a resumed run draws the same numbers (INTERFACES section 4).

Shapes: B batch, T time, N = B*T start states, H horizon, S, C latent, D width, A actions,
F = S*C + D features.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from twister_jax import imagination, optim, sharding
from twister_jax.distributions import onehot_sample, twohot_log_prob, twohot_mean
from twister_jax.losses import actor_critic as ac_lib
from twister_jax.losses import world_model as wm_loss
from twister_jax.networks import tssm as tssm_lib
from twister_jax.networks import heads
from twister_jax.networks.world_model import WorldModel
from twister_jax.policy_dist import PolicyDist

sg = jax.lax.stop_gradient

# fold_in purposes of a gradient step's key
_WM_NOISE, _WM_DROPOUT, _IMAGINE = 0, 1, 2


@flax.struct.dataclass
class TrainState:
    """Everything a gradient step reads and writes (plain pytrees; graph definitions are closed over).

    Attributes:
      step: int32 scalar, gradient steps done (the world-model optimiser's step counter).
      params: ``{"world_model", "actor", "critic", "slow_critic"}`` -> `nnx.State` of `nnx.Param`s.
      opt_state: ``{"world_model", "actor", "critic"}`` -> Optax states.
      retnorm: `ReturnNormState` (EMA of the 5%/95% return percentiles).
    A leading run axis can be added to every leaf and the step vmapped (many seeds per device).
    """
    step: jax.Array
    params: dict
    opt_state: dict
    retnorm: ac_lib.ReturnNormState


@flax.struct.dataclass
class ActState:
    """Acting state of N envs (spec 7.3; INTERFACES section 3).

    Attributes:
      stoch: ``(N, S, C)`` previous posterior sample ``z_{t-1}``.
      action: ``(N, A)`` previous action ``a_{t-1}`` (unclipped policy sample; the TSSM clips).
      cache: `KVCache`: per block ``(N, W, D)`` keys/values (newest last), episode flags ``(N, W)``,
        validity ``(N, W)``.
    """
    stoch: jax.Array
    action: jax.Array
    cache: tssm_lib.KVCache


@dataclasses.dataclass(frozen=True)
class Agent:
    """Jitted pure functions closing over the config and the networks' graph definitions."""
    config: Any
    init_state: Callable
    train_step: Callable
    init_act_state: Callable
    policy_step: Callable
    reset_act_state: Callable
    figures: Callable
    mesh: Any
    dist: PolicyDist


def _dtype(config):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.compute_dtype]


def build_networks(config, key: jax.Array):
    """World model, policy, critic as nnx modules (spec 3, 5.7, 5.8) from `config` and `key`."""
    dist = PolicyDist.from_config(config)
    m = config.model
    rngs = nnx.Rngs(params=key)
    dtype = _dtype(config)
    wm = WorldModel.from_config(config, rngs)
    policy = heads.policy_head(m, dist.num_actions, continuous=not dist.discrete, dtype=dtype, rngs=rngs)
    critic = heads.value_head(m, dtype=dtype, rngs=rngs)
    return wm, policy, critic


def _split(module):
    graphdef, params = nnx.split(module, nnx.Param)
    return graphdef, params


def imagine_and_targets(wm, policy_apply, critic_apply, dist: PolicyDist, start, start_cont, retnorm,
                        key: jax.Array, config):
    """Imagination from every start state and the actor-critic targets (spec 5.2-5.5).

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


def make_agent(config, mesh=None) -> Agent:
    """Builds the agent's jitted functions for `config` (validated, INTERFACES section 2).

    Args:
      config: the run config.
      mesh: a `sharding.make_mesh()` mesh (default: all devices). The batch must divide over it.
    """
    mesh = sharding.make_mesh() if mesh is None else mesh
    sharding.check_batch_size(config.batch_size, mesh)
    if config.matmul_precision != "default":
        jax.config.update("jax_default_matmul_precision", config.matmul_precision)
    dist = PolicyDist.from_config(config)
    txs = optim.make_optimizers(config)
    wm0, policy0, critic0 = build_networks(config, jax.random.key(0))
    wm_graph, _ = _split(wm0)
    pol_graph, _ = _split(policy0)
    critic_graph, _ = _split(critic0)
    m = config.model
    loss_cfg = wm_loss.LossConfig.from_config(config)
    horizon = config.imagination_horizon
    bins_range = m.bins_range
    gating = bool(config.quirks.episode_mask_gating)
    rep = sharding.replicated(mesh)

    def init_state(key):
        wm, policy, critic = build_networks(config, key)
        params = {"world_model": nnx.state(wm, nnx.Param), "actor": nnx.state(policy, nnx.Param),
                  "critic": nnx.state(critic, nnx.Param)}
        params["slow_critic"] = jax.tree_util.tree_map(jnp.copy, params["critic"])
        opt_state = {name: txs[name].init(params[name]) for name in optim.GROUPS}
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                          retnorm=ac_lib.init_return_norm())

    def apply_fn(graph):
        return lambda params: nnx.merge(graph, params)

    def _train_step(state: TrainState, batch: dict, key: jax.Array):
        key = jax.random.fold_in(key, state.step)
        p = state.params
        b, t = batch["image"].shape[:2]
        noise = wm_loss.draw_noise(jax.random.fold_in(key, _WM_NOISE), b, t, m.stoch, m.discrete,
                                   crop_scale=tuple(config.augment.crop_scale),
                                   crop_ratio=tuple(config.augment.crop_ratio),
                                   image_size=tuple(config.env.image_size))

        # 1. world model (spec 7.2 item 2)
        def wm_obj(wm_params):
            wm = nnx.merge(wm_graph, wm_params)
            return wm_loss.world_model_loss(wm, batch, noise, loss_cfg, deterministic=False,
                                            dropout_key=jax.random.fold_in(key, _WM_DROPOUT))
        (wm_total, wm_aux), wm_grads = jax.value_and_grad(wm_obj, has_aux=True)(p["world_model"])
        wm_updates, wm_opt = txs["world_model"].update(wm_grads, state.opt_state["world_model"], p["world_model"])
        new_wm_params = optax.apply_updates(p["world_model"], wm_updates)

        # 2. actor (spec 7.2 item 3): imagination with the updated world model
        wm = nnx.merge(wm_graph, sg(new_wm_params))
        policy = nnx.merge(pol_graph, p["actor"])
        critic = nnx.merge(critic_graph, p["critic"])
        new_retnorm, traj, tgt = imagine_and_targets(
            wm, policy, critic, dist, wm_aux["start"], wm_aux["start_cont"], state.retnorm,
            jax.random.fold_in(key, _IMAGINE), config)
        feat_h = traj["feat"][:, :horizon]
        weights = tgt["weights"][:, :horizon]

        def actor_obj(actor_params):
            raw = nnx.merge(pol_graph, actor_params)(feat_h)
            return ac_lib.actor_loss(raw, traj["action"][:, :horizon], tgt["advantages"], weights,
                                     dist=dist, entropy_scale=config.ac.entropy)
        (actor_l, actor_aux), actor_grads = jax.value_and_grad(actor_obj, has_aux=True)(p["actor"])
        actor_updates, actor_opt = txs["actor"].update(actor_grads, state.opt_state["actor"], p["actor"])
        new_actor = optax.apply_updates(p["actor"], actor_updates)

        # 3. critic (spec 7.2 item 4) against the slow critic's mean on the same states
        slow_values = twohot_mean(nnx.merge(critic_graph, p["slow_critic"])(feat_h), bins_range)[..., 0]

        def critic_obj(critic_params):
            logits = nnx.merge(critic_graph, critic_params)(feat_h)
            return ac_lib.critic_loss(logits, tgt["returns"], slow_values, weights,
                                      reg_scale=config.ac.slow_critic_reg,
                                      log_prob_fn=lambda lg, y: twohot_log_prob(lg, y, bins_range))
        (critic_l, _), critic_grads = jax.value_and_grad(critic_obj, has_aux=True)(p["critic"])
        critic_updates, critic_opt = txs["critic"].update(critic_grads, state.opt_state["critic"], p["critic"])
        new_critic = optax.apply_updates(p["critic"], critic_updates)

        # 4. slow critic (spec 5.8)
        new_slow = optim.slow_critic_update(p["slow_critic"], new_critic, config.ac.slow_critic_rate)

        new_state = TrainState(
            step=state.step + 1,
            params={"world_model": new_wm_params, "actor": new_actor, "critic": new_critic,
                    "slow_critic": new_slow},
            opt_state={"world_model": wm_opt, "actor": actor_opt, "critic": critic_opt},
            retnorm=new_retnorm)
        metrics = {"loss": wm_total, **wm_aux["losses"], **wm_aux["metrics"],
                   "actor": actor_l, "value": critic_l,
                   "returns_mean": jnp.mean(tgt["returns"]), "perc_low": new_retnorm.low,
                   "perc_high": new_retnorm.high, "policy_ent": jnp.mean(actor_aux["entropy"]),
                   "imag_reward_mean": jnp.mean(traj["reward"][:, 1:]),
                   "imag_value_mean": jnp.mean(traj["value"]),
                   "imag_cont_mean": jnp.mean(traj["cont"][:, 1:]),
                   "grad_norm_world_model": optax.global_norm(wm_grads),
                   "grad_norm_actor": optax.global_norm(actor_grads),
                   "grad_norm_critic": optax.global_norm(critic_grads)}
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        return new_state, metrics

    def init_state_sharded(key):
        # Eager initialisation (compiling the initialisers costs more than running them), then the
        # state is replicated over the mesh.
        return sharding.put_replicated(init_state(key), mesh)

    train_step_jit = jax.jit(_train_step, donate_argnums=0)

    def train_step(state, batch, key):
        if not isinstance(batch["image"], jax.Array):
            batch = sharding.global_batch(batch, mesh)
        return train_step_jit(state, batch, key)

    # ------------------------------------------------------------------ acting (spec 7.3)
    def init_act_state(n: int) -> ActState:
        return ActState(stoch=jnp.zeros((n, m.stoch, m.discrete), jnp.float32),
                        action=jnp.zeros((n, dist.num_actions), jnp.float32),
                        cache=tssm_lib.KVCache.empty(n, m.context, m.hidden, m.blocks, jnp.float32))

    def reset_act_state(act_state: ActState, mask) -> ActState:
        """Envs where `mask (N,)` is True start an episode with an empty cache (evaluation, spec 1.3)."""
        mask = jnp.asarray(mask, bool)
        cache = act_state.cache
        return act_state.replace(cache=cache.replace(valid=jnp.where(mask[:, None], False, cache.valid),
                                                     flags=jnp.where(mask[:, None], 0.0, cache.flags)))

    def _policy_step(params, act_state: ActState, image, is_first, key, greedy: bool):
        wm = nnx.merge(wm_graph, params["world_model"])
        policy = nnx.merge(pol_graph, params["actor"])
        n = image.shape[0]
        k_post, k_pol = jax.random.split(key)
        logits = wm.encode(wm_loss.preprocess(image))
        z = onehot_sample(logits, jax.random.gumbel(k_post, logits.shape, jnp.float32), m.unimix)
        first = jnp.asarray(is_first).astype(jnp.float32)
        prev_stoch, prev_action = wm.tssm.reset_inputs(act_state.stoch, act_state.action, first)
        out = wm.tssm.step(prev_stoch, prev_action, act_state.cache, first,
                           episode_mask_gating=gating, deterministic=True)
        feat = tssm_lib.features(z, out["deter"])
        raw = policy(feat)
        if greedy:
            action = dist.mode(raw)
        else:
            action = dist.sample(raw, dist.draw_noise(k_pol, (n,)))
        action = sg(action).astype(jnp.float32)
        return ActState(stoch=sg(z), action=action, cache=out["cache"]), action

    policy_step_jit = jax.jit(_policy_step, static_argnames=("greedy",))

    def policy_step(params, act_state, image, is_first, key, *, greedy: bool = False):
        return policy_step_jit(params, act_state, jnp.asarray(image), jnp.asarray(is_first), key, greedy=greedy)

    # ------------------------------------------------------------------ figures (spec 7.4)
    def _figures(params, batch, key, context: int = 5, rows: int = 4):
        from twister_jax import figures as fig_lib
        wm = nnx.merge(wm_graph, params["world_model"])
        policy = nnx.merge(pol_graph, params["actor"])
        return fig_lib.make_figures(wm, policy, dist, batch, key, context=context, rows=rows)

    figures = jax.jit(_figures, static_argnames=("context", "rows"))

    return Agent(config=config, init_state=init_state_sharded, train_step=train_step,
                 init_act_state=init_act_state, policy_step=policy_step, reset_act_state=jax.jit(reset_act_state),
                 figures=figures, mesh=mesh, dist=dist)
