"""Baseline policies on the evaluation protocol: the uniform random policy a learning check compares
against, and constant-action policies (what a greedy policy that has not yet learned to read the
observation scores: docs/learning_check.md).

`RandomPolicy` has the acting interface `acting.run_episodes` uses (`init_act_state`, `reset_act_state`,
`policy_step`) and draws every action uniformly (one-hot over the actions, or uniform in [-1, 1]^A;
`acting.random_actions`) from its own host RNG, ignoring the observation. `random_returns(config, n)`
plays `n` episodes of it exactly as `Evaluator` plays greedy ones: `config.eval_envs` envs with the
evaluation seeds, episode j reset with seed `env_seed(config.seed, EVAL, j)`. The same episode seeds
as the greedy evaluation, so the two are compared on common random numbers. `ConstantPolicy` /
`constant_returns(config, action, n)` play one fixed action in every step the same way, and
`initial_returns(config, n)` plays the untrained agent's greedy policy: the train state a run with
`config.seed` starts from, evaluated as the run would evaluate it at step 0 (the control that tells
"learned to beat random" from "beats random untrained").
"""
from __future__ import annotations

import numpy as np

from twister_jax.acting import EVAL, env_seed, random_actions, run_episodes
from twister_jax.policy_dist import is_discrete

RANDOM_POLICY = 105  # env_seed purpose of the random policy's action RNG


class RandomPolicy:
    """Uniform random actions for N envs; the act state is unused (None)."""

    def __init__(self, config, seed: int):
        self.config = config
        self.rng = np.random.Generator(np.random.PCG64(env_seed(seed, RANDOM_POLICY)))

    def init_act_state(self, n: int):  # noqa: ARG002 - the acting interface
        return None

    def reset_act_state(self, act_state, mask):  # noqa: ARG002
        return act_state

    def policy_step(self, params, act_state, image, is_first, key, greedy: bool = True):  # noqa: ARG002
        """(None, (N, A) float32 random actions) for the N observations in `image` (N, H, W, 3)."""
        return act_state, random_actions(self.config, self.rng, int(image.shape[0]))


class ConstantPolicy:
    """The same action in every step for N envs: a one-hot (discrete) or a float vector in [-1, 1]^A."""

    def __init__(self, config, action):
        a = int(config.env.num_actions)
        if is_discrete(config):
            if not (isinstance(action, (int, np.integer)) and 0 <= action < a):
                raise ValueError(f"constant action {action!r} is not an action index in [0, {a})")
            self.action = np.eye(a, dtype=np.float32)[int(action)]
        else:
            vec = np.broadcast_to(np.asarray(action, np.float32), (a,))
            if not np.all(np.abs(vec) <= 1.0):
                raise ValueError(f"constant action {action!r} is outside [-1, 1]^{a}")
            self.action = vec.copy()

    def init_act_state(self, n: int):  # noqa: ARG002 - the acting interface
        return None

    def reset_act_state(self, act_state, mask):  # noqa: ARG002
        return act_state

    def policy_step(self, params, act_state, image, is_first, key, greedy: bool = True):  # noqa: ARG002
        """(None, (N, A) float32 copies of the action) for the N observations in `image`."""
        return act_state, np.broadcast_to(self.action, (int(image.shape[0]), self.action.shape[0]))


def random_returns(config, episodes: int) -> dict:
    """`episodes` random-policy episodes on the evaluation protocol of `config`.

    Returns:
      dict(returns: list of per-episode returns, lengths: list of per-episode lengths in frames).
    """
    return _play(RandomPolicy(config, int(config.seed)), config, episodes)


def constant_returns(config, action, episodes: int) -> dict:
    """`episodes` episodes of `ConstantPolicy(config, action)` on the evaluation protocol (as `random_returns`)."""
    return _play(ConstantPolicy(config, action), config, episodes)


def initial_returns(config, episodes: int) -> dict:
    """`episodes` greedy episodes of the agent's initial train state (`config.seed`'s), as `Evaluator` at step 0."""
    import jax

    from twister_jax import agent as agent_lib
    from twister_jax.acting import INIT

    agent = agent_lib.make_agent(config)
    base_key = jax.random.key(int(config.seed))
    params = agent.init_state(jax.random.fold_in(base_key, INIT)).params
    eval_key = jax.random.fold_in(jax.random.fold_in(base_key, EVAL), 0)   # Evaluator.run's key at step 0
    return _play(agent, config, episodes, params=params, key=eval_key)


def _play(policy, config, episodes: int, *, params=None, key=None) -> dict:
    import jax

    from twister_jax.envs.vector import VectorEnv

    envs = VectorEnv(config.env, [env_seed(config.seed, EVAL, 10_000 + i) for i in range(config.eval_envs)])
    try:
        # the key is folded per step by run_episodes (and ignored by the random and constant policies)
        res = run_episodes(policy, params, config, envs, int(episodes), jax.random.key(0) if key is None else key)
    finally:
        envs.close()
    return {"returns": [float(r) for r in res["returns"]], "lengths": [int(n) for n in res["lengths"]]}
