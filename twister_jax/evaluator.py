"""Greedy evaluation during training (docs/original.md §1.3, §7.4): the part that owns the eval envs.

`Evaluator.run(params, step, ...)` plays `config.eval_episodes` greedy episodes on `config.eval_envs`
envs (created on first use, seeds `env_seed(seed, EVAL, 10_000 + i)`), with key
`fold_in(fold_in(base, EVAL), step)`; episodes are seeded by (seed, episode index), the same seeds at
every evaluation (common random numbers across evaluations). Its state is which step was evaluated
last and the score then (`get_state`/`set_state`); an evaluation cut short by a stop request
returns None and is redone on resume.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np

from twister_jax.acting import EVAL, env_seed, run_episodes


class Evaluator:
    def __init__(self, config, agent, base_key):
        import jax

        self.config, self.agent = config, agent
        self.key = jax.random.fold_in(base_key, EVAL)
        self.envs = None
        self.last_step = -1           # gradient step of the last finished evaluation
        self.last_score: Optional[float] = None

    def due(self, step: int, last: bool) -> bool:
        """An evaluation is due at `step` (every `eval_every` and at the last step), once."""
        return (step % int(self.config.eval_every) == 0 or last) and self.last_step != step

    def run(self, params, step: int, env_steps: int, frames: int,
            should_stop: Callable[[], bool] = lambda: False) -> Optional[dict]:
        """The scores.jsonl row of a greedy evaluation at `step`, or None if stopped early."""
        import jax
        from twister_jax.envs.vector import VectorEnv

        c = self.config
        if self.envs is None:
            self.envs = VectorEnv(c.env, [env_seed(c.seed, EVAL, 10_000 + i) for i in range(c.eval_envs)])
        t0 = time.time()
        res = run_episodes(self.agent, params, c, self.envs, int(c.eval_episodes),
                           jax.random.fold_in(self.key, step), should_stop=should_stop)
        if res is None:
            return None
        r = np.asarray(res["returns"], np.float64)
        self.last_step, self.last_score = step, float(r.mean())
        return {"step": step, "env_steps": env_steps, "frames": frames,
                "return_mean": float(r.mean()), "return_std": float(r.std()), "episodes": int(r.size),
                "returns": [float(x) for x in r], "length_mean": float(np.mean(res["lengths"])),
                "wall_time": time.time() - t0}

    def get_state(self) -> dict:
        return {"last_step": self.last_step, "last_score": self.last_score}

    def set_state(self, state: dict) -> None:
        self.last_step = int(state["last_step"])
        self.last_score = None if state["last_score"] is None else float(state["last_score"])

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()
