"""The agent's device functions: `init_state`, `train_step`, `policy_step` (docs/original.md §5, §6, §7.2, §7.3).

`make_agent(config)` builds the networks once, splits them into static graph definitions (an
`AgentSpec`, closed over) and parameter pytrees (in the `TrainState`), and returns an `Agent` of
jitted pure functions:

    agent = make_agent(config)
    state = agent.init_state(jax.random.key(config.seed))
    state, metrics = agent.train_step(state, batch, base_key)       # state donated
    act_state = agent.init_act_state(num_envs)
    act_state, action = agent.policy_step(state.params, act_state, image, is_first, key, greedy=False)

The gradient step itself (world-model, actor and critic updates, in the original's order) is
`twister_jax.updates.train_step`; this module holds the states, initialisation and acting.

Shapes: N envs, S, C latent, D width, A actions, W cache slots, F = S*C + D features.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from twister_jax import optim, runtime, sharding, updates
from twister_jax.distributions import onehot_sample
from twister_jax.losses import actor_critic as ac_lib
from twister_jax.losses import world_model as wm_loss
from twister_jax.networks import tssm as tssm_lib
from twister_jax.networks import heads
from twister_jax.networks.world_model import WorldModel
from twister_jax.policy_dist import PolicyDist

sg = jax.lax.stop_gradient


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
    """Acting state of N envs (docs/original.md §7.3; docs/interfaces.md §3).

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


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """The static half of the agent, built once per config and bound into every jitted function.

    Attributes:
      config: the run config.
      dist: `PolicyDist` of the action space.
      txs: ``{"world_model", "actor", "critic"}`` -> Optax optimisers (`optim.make_optimizers`).
      loss_cfg: `losses.world_model.LossConfig`.
      graphs: ``{"world_model", "actor", "critic"}`` -> `nnx.GraphDef` (the slow critic shares the critic's).
    """
    config: Any
    dist: PolicyDist
    txs: dict
    loss_cfg: wm_loss.LossConfig
    graphs: dict

    @classmethod
    def from_config(cls, config) -> "AgentSpec":
        wm, policy, critic = build_networks(config, jax.random.key(0))
        graphs = {name: nnx.split(module, nnx.Param)[0]
                  for name, module in (("world_model", wm), ("actor", policy), ("critic", critic))}
        return cls(config=config, dist=PolicyDist.from_config(config), txs=optim.make_optimizers(config),
                   loss_cfg=wm_loss.LossConfig.from_config(config), graphs=graphs)

    def world_model(self, params) -> WorldModel:
        return nnx.merge(self.graphs["world_model"], params)

    def actor(self, params) -> heads.MLPHead:
        """Policy network: ``feat (..., F) -> raw output (..., A or 2A)``."""
        return nnx.merge(self.graphs["actor"], params)

    def critic(self, params) -> heads.MLPHead:
        """Critic (or slow critic): ``feat (..., F) -> value logits (..., bins)``."""
        return nnx.merge(self.graphs["critic"], params)


def _dtype(config):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.compute_dtype]


def build_networks(config, key: jax.Array):
    """World model, policy, critic as nnx modules (docs/original.md §3, §5.7, §5.8) from `config` and `key`."""
    dist = PolicyDist.from_config(config)
    m = config.model
    rngs = nnx.Rngs(params=key)
    dtype = _dtype(config)
    wm = WorldModel.from_config(config, rngs)
    policy = heads.policy_head(m, dist.num_actions, continuous=not dist.discrete, dtype=dtype, rngs=rngs)
    critic = heads.value_head(m, dtype=dtype, rngs=rngs)
    return wm, policy, critic


# ---------------------------------------------------------------------------------- training state

def init_train_state(spec: AgentSpec, key: jax.Array) -> TrainState:
    """Fresh parameters from `key` (docs/original.md §6.4), the slow critic a copy of the critic, fresh optimisers."""
    wm, policy, critic = build_networks(spec.config, key)
    params = {"world_model": nnx.state(wm, nnx.Param), "actor": nnx.state(policy, nnx.Param),
              "critic": nnx.state(critic, nnx.Param)}
    params["slow_critic"] = jax.tree_util.tree_map(jnp.copy, params["critic"])
    opt_state = {name: spec.txs[name].init(params[name]) for name in optim.GROUPS}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                      retnorm=ac_lib.init_return_norm())


# ---------------------------------------------------------------------------------- acting (docs/original.md §7.3)

def init_act_state(spec: AgentSpec, n: int) -> ActState:
    """Acting state of `n` envs: zero latent and action, an empty KV cache."""
    m = spec.config.model
    return ActState(stoch=jnp.zeros((n, m.stoch, m.discrete), jnp.float32),
                    action=jnp.zeros((n, spec.dist.num_actions), jnp.float32),
                    cache=tssm_lib.KVCache.empty(n, m.context, m.hidden, m.blocks, jnp.float32))


def reset_act_state(act_state: ActState, mask) -> ActState:
    """Envs where `mask (N,)` is True start an episode with an empty cache (evaluation, docs/original.md §1.3)."""
    mask = jnp.asarray(mask, bool)
    cache = act_state.cache
    return act_state.replace(cache=cache.replace(valid=jnp.where(mask[:, None], False, cache.valid),
                                                 flags=jnp.where(mask[:, None], 0.0, cache.flags)))


def policy_step(spec: AgentSpec, params: dict, act_state: ActState, image: jax.Array, is_first: jax.Array,
                key: jax.Array, greedy: bool):
    """One acting step of N envs: encode, TSSM step over the cache, policy (docs/original.md §7.3).

    Args:
      params: `TrainState.params` (the world model's and the actor's are used).
      act_state: `ActState` of the previous step.
      image: uint8 ``(N, 64, 64, 3)``; is_first: ``(N,)`` episode starts.
      key: posterior and policy noise.
      greedy: the policy's mode instead of a sample.

    Returns:
      ``(new ActState, action (N, A) float32)``.
    """
    m = spec.config.model
    wm = spec.world_model(params["world_model"])
    policy = spec.actor(params["actor"])
    n = image.shape[0]
    k_post, k_pol = jax.random.split(key)
    logits = wm.encode(wm_loss.preprocess(image))
    z = onehot_sample(logits, jax.random.gumbel(k_post, logits.shape, jnp.float32), m.unimix)
    first = jnp.asarray(is_first).astype(jnp.float32)
    prev_stoch, prev_action = wm.tssm.reset_inputs(act_state.stoch, act_state.action, first)
    out = wm.tssm.step(prev_stoch, prev_action, act_state.cache, first,
                       episode_mask_gating=bool(spec.config.quirks.episode_mask_gating), deterministic=True)
    feat = tssm_lib.features(z, out["deter"])
    raw = policy(feat)
    if greedy:
        action = spec.dist.mode(raw)
    else:
        action = spec.dist.sample(raw, spec.dist.draw_noise(k_pol, (n,)))
    action = sg(action).astype(jnp.float32)
    return ActState(stoch=sg(z), action=action, cache=out["cache"]), action


def figures(spec: AgentSpec, params: dict, batch: dict, key: jax.Array, context: int = 5, rows: int = 4):
    """Open-loop prediction figures (docs/original.md §7.4, `twister_jax.figures.make_figures`)."""
    from twister_jax import figures as fig_lib
    return fig_lib.make_figures(spec.world_model(params["world_model"]), spec.actor(params["actor"]), spec.dist,
                                batch, key, context=context, rows=rows)


# ---------------------------------------------------------------------------------- the agent

def make_agent(config, mesh=None) -> Agent:
    """Builds the agent's jitted functions for `config` (validated, docs/interfaces.md §2).

    Sets the process-wide JAX options (`runtime.configure_jax`) first.

    Args:
      config: the run config.
      mesh: a `sharding.make_mesh()` mesh (default: all devices). The batch must divide over it.
    """
    runtime.configure_jax(config)
    mesh = sharding.make_mesh() if mesh is None else mesh
    sharding.check_batch_size(config.batch_size, mesh)
    spec = AgentSpec.from_config(config)

    def init_state(key):
        # Eager initialisation (compiling the initialisers costs more than running them), then the
        # state is replicated over the mesh.
        return sharding.put_replicated(init_train_state(spec, key), mesh)

    train_step_jit = jax.jit(functools.partial(updates.train_step, spec), donate_argnums=0)

    def train_step(state, batch, key):
        if not isinstance(batch["image"], jax.Array):
            batch = sharding.global_batch(batch, mesh)
        return train_step_jit(state, batch, key)

    policy_step_jit = jax.jit(functools.partial(policy_step, spec), static_argnames=("greedy",))

    def policy_step_fn(params, act_state, image, is_first, key, *, greedy: bool = False):
        return policy_step_jit(params, act_state, jnp.asarray(image), jnp.asarray(is_first), key, greedy=greedy)

    return Agent(config=config, init_state=init_state, train_step=train_step,
                 init_act_state=functools.partial(init_act_state, spec), policy_step=policy_step_fn,
                 reset_act_state=jax.jit(reset_act_state),
                 figures=jax.jit(functools.partial(figures, spec), static_argnames=("context", "rows")),
                 mesh=mesh, dist=spec.dist)
