"""The uniform random policy on the evaluation protocol: the baseline a learning check compares against.

`RandomPolicy` has the acting interface `acting.run_episodes` uses (`init_act_state`, `reset_act_state`,
`policy_step`) and draws every action uniformly (one-hot over the actions, or uniform in [-1, 1]^A;
`acting.random_actions`) from its own host RNG, ignoring the observation. `random_returns(config, n)`
plays `n` episodes of it exactly as `Evaluator` plays greedy ones: `config.eval_envs` envs with the
evaluation seeds, episode j reset with seed `env_seed(config.seed, EVAL, j)`. The same episode seeds
as the greedy evaluation, so the two are compared on common random numbers.
"""
from __future__ import annotations

import numpy as np

from twister_jax.acting import EVAL, env_seed, random_actions, run_episodes

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


def random_returns(config, episodes: int) -> dict:
    """`episodes` random-policy episodes on the evaluation protocol of `config`.

    Returns:
      dict(returns: list of per-episode returns, lengths: list of per-episode lengths in frames).
    """
    import jax

    from twister_jax.envs.vector import VectorEnv

    envs = VectorEnv(config.env, [env_seed(config.seed, EVAL, 10_000 + i) for i in range(config.eval_envs)])
    try:
        # the key is folded per step by run_episodes and ignored by the random policy
        res = run_episodes(RandomPolicy(config, int(config.seed)), None, config, envs, int(episodes),
                           jax.random.key(0))
    finally:
        envs.close()
    return {"returns": [float(r) for r in res["returns"]], "lengths": [int(n) for n in res["lengths"]]}
