"""The agent's device functions: `init_state`, `train_step`, `policy_step` (docs/original.md §5, §6, §7.2, §7.3).

`make_agent(config)` builds the networks once, splits them into static graph definitions (an
`AgentSpec`, closed over) and parameter pytrees (in the `TrainState`), and returns an `Agent` of
jitted pure functions:

    agent = make_agent(config)
    state = agent.init_state(jax.random.key(config.seed))
    state, metrics = agent.train_step(state, batch, base_key)       # state donated; metrics.Metrics
    act_state = agent.init_act_state(num_envs)
    act_state, action = agent.policy_step(state.params, act_state, image, is_first, key, greedy=False)

With `config.num_seeds = R > 1` the agent is a group of R independent runs (docs/architecture.md §9):
every function takes and returns a leading run axis R on the train state, the acting state, the
batch `(R, B, T, ...)`, the images `(R, N, ...)`, the keys `(R,)` and the metrics `(R,)`; the
gradient step and the policy step are each ONE jitted `vmap` over runs, so run i computes exactly
what a solo run would from its own state, batch and key. `agent.solo` holds the one-run functions
(evaluation and figures of one run, on `take_run(params, i)`); `agent.split_runs(tree)` returns the
R per-run trees in one jitted call.

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
import numpy as np
from flax import nnx

from twister_jax import optim, runtime, sharding, updates
from twister_jax.distributions import onehot_sample
from twister_jax.losses import actor_critic as ac_lib
from twister_jax.losses import world_model as wm_loss
from twister_jax.metrics import Metrics
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
    num_runs: int = 1           # R; 1: a solo run, no run axis
    solo: Any = None            # the one-run `Agent` of a group (None for a solo run)
    split_runs: Any = None      # group: tree with run axis R -> list of R trees (one jitted call)


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
      key: posterior and policy noise: a PRNG key, or its raw key data uint32 ``(2,)`` (a host
        array from `acting.KeyStream`).
      greedy: the policy's mode instead of a sample.

    Returns:
      ``(new ActState, action (N, A) float32)``.
    """
    m = spec.config.model
    wm = spec.world_model(params["world_model"])
    policy = spec.actor(params["actor"])
    n = image.shape[0]
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
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

def take_run(tree, i: int):
    """Run `i` of a pytree with a leading run axis (e.g. a group's params for one evaluation)."""
    return jax.tree.map(lambda x: x[i], tree)


def stack_runs(trees):
    """R pytrees of the same structure -> one pytree with a leading run axis R."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def packed_train_step(spec: AgentSpec, state: TrainState, batch: dict, key: jax.Array):
    """`updates.train_step` with its metrics packed: ``(TrainState, metrics.Metrics)``."""
    state, metrics = updates.train_step(spec, state, batch, key)
    return state, Metrics.pack(metrics)


def _solo_agent(config, spec: AgentSpec, mesh) -> Agent:
    init_state = lambda key: sharding.put_replicated(init_train_state(spec, key), mesh)  # noqa: E731
    # Eager initialisation (compiling the initialisers costs more than running them), then the
    # state is replicated over the mesh.
    train_step_jit = jax.jit(functools.partial(packed_train_step, spec), donate_argnums=0)

    def train_step(state, batch, key):
        if not isinstance(batch["image"], jax.Array):
            batch = sharding.global_batch(batch, mesh)
        return train_step_jit(state, batch, key)

    policy_step_jit = jax.jit(functools.partial(policy_step, spec), static_argnames=("greedy",))

    def policy_step_fn(params, act_state, image, is_first, key, *, greedy: bool = False):
        # NumPy inputs go to the jitted call as they are (jnp.asarray would be an eager dispatch each)
        return policy_step_jit(params, act_state, np.asarray(image), np.asarray(is_first), key, greedy=greedy)

    return Agent(config=config, init_state=init_state, train_step=train_step,
                 init_act_state=functools.partial(init_act_state, spec), policy_step=policy_step_fn,
                 reset_act_state=jax.jit(reset_act_state),
                 figures=jax.jit(functools.partial(figures, spec), static_argnames=("context", "rows")),
                 mesh=mesh, dist=spec.dist)


def _group_agent(config, spec: AgentSpec, mesh, num_runs: int) -> Agent:
    """R runs with a leading run axis; one jitted vmap per step (module docstring)."""
    r = int(num_runs)
    on_runs = sharding.run_sharded(mesh)

    def init_state(keys):
        """keys (R,) -> stacked `TrainState`: run i initialised eagerly from keys[i], as a solo run."""
        return jax.device_put(stack_runs([init_train_state(spec, keys[i]) for i in range(r)]), on_runs)

    train_step_jit = jax.jit(jax.vmap(functools.partial(packed_train_step, spec)), donate_argnums=0)

    def train_step(state, batch, keys):
        """state (R, ...), batch {k: (R, B, ...)}, keys (R,) -> (state, metrics {k: (R,)})."""
        if not isinstance(batch["image"], jax.Array):
            batch = {k: jax.device_put(np.asarray(v), sharding.run_batch_sharded(mesh)) for k, v in batch.items()}
        return train_step_jit(state, batch, keys)

    @functools.partial(jax.jit, static_argnames=("greedy",))
    def policy_step_jit(params, act_state, image, is_first, keys, greedy):
        return jax.vmap(lambda p, a, im, f, k: policy_step(spec, p, a, im, f, k, greedy))(
            params, act_state, image, is_first, keys)

    def policy_step_fn(params, act_state, image, is_first, keys, *, greedy: bool = False):
        """image (R, N, H, W, 3), is_first (R, N), keys (R,) -> (act_state (R, N, ...), action (R, N, A))."""
        return policy_step_jit(params, act_state, np.asarray(image), np.asarray(is_first), keys, greedy=greedy)

    def init_act_state_fn(n):
        return jax.device_put(stack_runs([init_act_state(spec, n)] * r), on_runs)

    solo = _solo_agent(config, spec, sharding.make_mesh(mesh.devices.reshape(-1)[:1]))
    split = jax.jit(lambda tree: [take_run(tree, i) for i in range(r)])
    return Agent(config=config, init_state=init_state, train_step=train_step, init_act_state=init_act_state_fn,
                 policy_step=policy_step_fn, reset_act_state=jax.jit(jax.vmap(reset_act_state)),
                 figures=solo.figures, mesh=mesh, dist=spec.dist, num_runs=r, solo=solo, split_runs=split)


def make_agent(config, mesh=None) -> Agent:
    """Builds the agent's jitted functions for `config` (validated, docs/interfaces.md §2).

    Sets the process-wide JAX options (`runtime.configure_jax`) first.

    Args:
      config: the run config; `config.num_seeds` > 1 gives a group agent (module docstring).
      mesh: a `sharding.make_mesh()` mesh, or `sharding.make_run_mesh(R)` for a group (default: all
        devices). The batch must divide over it (its `data` axis).
    """
    runtime.configure_jax(config)
    num_runs = int(config.get("num_seeds", 1))
    if mesh is None:
        mesh = sharding.mesh_for(config)
    sharding.check_batch_size(config.batch_size, mesh)
    spec = AgentSpec.from_config(config)
    if num_runs == 1:
        return _solo_agent(config, spec, mesh)
    return _group_agent(config, spec, mesh, num_runs)
