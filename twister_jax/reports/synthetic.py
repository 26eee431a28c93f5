"""Writes synthetic run directories in the program's layout (docs/interfaces.md §6), for tests and demos.

No jax import. The files mimic what the training program writes: `config.json` (nested `env.suite`,
`env.task`, `seed`), `scores.jsonl` rows (step, env_steps, frames, return_mean, return_std, episodes,
returns, length_mean) and, for finished runs, `done.json`.
"""
from __future__ import annotations

import json
import pathlib

from twister_jax.reports import scores as scores_lib


def write_run(root, task: str, seed: int, final_return: float, *, suite: str = "atari100k",
              evals: int = 3, finished: bool = True, env_suite: str | None = None,
              steps_per_eval: int = 10_000, group: str | None = None) -> pathlib.Path:
    """Writes ROOT/<task>/seed_<seed>/ (or ROOT/<task>/<group>/seed_<seed>/, a run of a process that
    trained several seeds) whose last evaluation has `return_mean == final_return`.

    Earlier evaluations ramp linearly from 0 to the final return. `env_suite` overrides the config's
    `env.suite` (e.g. to fake a run of another suite in this folder).
    """
    suite = scores_lib.normalize_suite(suite)
    repeat = 4 if suite == "atari100k" else 2
    run = pathlib.Path(root) / task / (group or "") / f"seed_{seed}"
    run.mkdir(parents=True, exist_ok=True)
    config = {"seed": seed, "env": {"suite": env_suite or scores_lib.SUITES[suite], "task": task,
                                    "action_repeat": repeat}}
    (run / "config.json").write_text(json.dumps(config))
    lines = []
    for i in range(1, evals + 1):
        ret = final_return * i / evals
        env_steps = i * steps_per_eval
        lines.append(json.dumps({"step": env_steps, "env_steps": env_steps, "frames": env_steps * repeat,
                                 "return_mean": ret, "return_std": 0.0, "episodes": 2,
                                 "returns": [ret, ret], "length_mean": 1000.0}))
    (run / "scores.jsonl").write_text("\n".join(lines) + "\n")
    if finished:
        (run / "done.json").write_text(json.dumps({"return_mean": final_return, "wall_time": 1.0}))
    return run
