"""Baseline returns per task: the uniform random policy and every constant action, on the evaluation protocol.

A greedy policy that has not yet learned to read the observation plays (nearly) one fixed action, so
before a learning check asks "greedy > random" it helps to know what fixed actions score on the task:
on 11 of the 26 Atari 100k games every constant action scored below random (docs/learning_check.md).
For each task this plays `--episodes` episodes of the random policy and of each constant action (every action of an
Atari game; `--values` on every dimension of a DMC task) with `twister_jax.random_policy`, exactly as
the greedy evaluation plays them (the small config's eval envs and episode seeds, the 108,000-frame
limit on Atari), and prints a table and a JSON line.

    python experiments/baselines.py --tasks=asterix,cartpole_swingup
    python experiments/baselines.py --tasks=demon_attack --episodes=4 --max_frames=8000   # a quick look

Columns: random mean +- std; how many constant actions score above the random mean; the best constant
action and its mean; mean episode length in agent steps of the random policy; then every constant
action's mean (action index: mean, '+' when an episode hit the frame limit).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from twister_jax.cli import fail as _fail  # noqa: E402



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", required=True, help="comma-separated Atari games / DMC tasks")
    p.add_argument("--episodes", type=int, default=10, help="episodes per policy")
    p.add_argument("--values", default="-1,-0.5,0,0.5,1",
                   help="DMC: the constant values played on every action dimension")
    p.add_argument("--max_frames", type=int, default=0,
                   help="override env.time_limit_frames (0: the protocol's); shorter episodes for a quick look")
    args = p.parse_args(argv)
    if args.episodes < 1:
        _fail(f"--episodes={args.episodes} must be at least 1")
    if args.max_frames < 0:
        _fail(f"--max_frames={args.max_frames} must be 0 (the protocol's limit) or positive")
    try:
        args.values = [float(v) for v in args.values.split(",")]
    except ValueError:
        _fail(f"--values={args.values!r} is not a comma-separated list of numbers")
    if not all(-1.0 <= v <= 1.0 for v in args.values):
        _fail(f"--values={args.values} must lie in [-1, 1]")
    return args


def task_baselines(config, episodes: int, values: list[float]) -> dict:
    """Random and constant-action returns of one task: {random: {...}, constants: [{action, mean, ...}]}."""
    from twister_jax.policy_dist import is_discrete
    from twister_jax.random_policy import constant_returns, random_returns

    limit = int(config.env.time_limit_frames)
    rand = random_returns(config, episodes)
    actions = list(range(int(config.env.num_actions))) if is_discrete(config) else values
    constants = []
    for a in actions:
        res = constant_returns(config, a, episodes)
        constants.append({"action": a, "mean": float(np.mean(res["returns"])), "returns": res["returns"],
                          "at_limit": sum(n >= limit for n in res["lengths"])})
    mean = float(np.mean(rand["returns"]))
    return {"random": {"mean": mean, "std": float(np.std(rand["returns"])), "returns": rand["returns"],
                       "length_mean": float(np.mean(rand["lengths"])) / int(config.env.action_repeat)},
            "constants": constants, "constants_above_random": sum(c["mean"] > mean for c in constants)}


def main(argv=None) -> int:
    args = parse_args(argv)
    from twister_jax.config_files import load_config

    configs = {}
    for task in filter(None, args.tasks.split(",")):
        try:
            config = load_config(REPO / "configs" / "small.py", task)
        except ValueError as exc:
            _fail(str(exc))
        if args.max_frames:
            with config.unlocked():
                config.env.time_limit_frames = args.max_frames
        configs[task] = config
    rows, results = [], {}
    print("| task | random | constants above random | best constant | random length | constant actions |")
    print("|---|---|---|---|---|---|")
    for task, config in configs.items():
        t0 = time.time()
        res = task_baselines(config, args.episodes, args.values)
        best = max(res["constants"], key=lambda c: c["mean"])
        every = " ".join(f"{c['action']}: {c['mean']:.4g}{'+' if c['at_limit'] else ''}" for c in res["constants"])
        r = res["random"]
        print(f"| {task} | {r['mean']:.4g} +- {r['std']:.3g} | {res['constants_above_random']} of "
              f"{len(res['constants'])} | {best['action']}: {best['mean']:.4g} | {r['length_mean']:.0f} | {every} |",
              flush=True)
        results[task] = dict(res, seconds=time.time() - t0)
        rows.append({"task": task, "random_mean": r["mean"], "best_constant": best["action"],
                     "best_constant_mean": best["mean"], "constants_above_random": res["constants_above_random"]})
    print(json.dumps({"baselines": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
