"""Learning check: does the agent learn real tasks? Small config, a few tasks x seeds, greedy vs random.

Trains `configs/small.py:<task>` (the original's algorithm and defaults with reduced sizes) on each task
for a fixed budget of env steps (agent steps summed over the training envs) with each seed, evaluating
greedily `--evals` times along the way and at the end (`eval_episodes` = 10 episodes each). Plays the
uniform random policy on the same evaluation protocol (`twister_jax.random_policy`, the same episode
seeds), and writes into --out:

  report.md      per task: final greedy return vs random, one-sided Welch's t-test on per-episode returns,
                 95% bootstrap interval of the difference, seeds above random, wall time and env steps
  summary.json   {"tasks": [{task, seeds, env_steps, final_mean, random_mean, p_value, ...}], command, ...}
  curves.png     learning curves (greedy return vs env steps per seed, their mean, the random mean)
  runs/<task>/seed_<s>/   the training runs (run-directory contract); logs/<task>_seed_<s>.log
                 (with --seeds_per_process=N: runs/<task>/seeds_<a>-<b>/seed_<s>/, one process per pack)
  random/<task>.json      the random policy's episodes
  initial/<task>_seed_<s>.json   the untrained agent's greedy episodes (each seed's initial train state,
                 evaluated as its run would at step 0): the control for "beats random untrained"
  probe/<task>_seed_<s>.json     the world-model probe of each seed's final checkpoint (posterior codes,
                 image loss against the mean frame, AC-CPC accuracy): the check for "beats random blind"

Runs whose done.json reaches the budget are skipped and interrupted runs resume, so re-running the same
command continues where it stopped (and `--report_only` rebuilds the report from what is there). A larger
`--env_steps` in the same `--out` extends the finished runs from their final checkpoints; until a run has
reached the new budget the report counts it as unfinished.

Usage:
  python experiments/learning_check.py --out=runs/learning_check                  # the default check
  python experiments/learning_check.py --out=/tmp/lc --tasks=boxing --seeds=0 --env_steps=boxing=400 --evals=1
  python experiments/learning_check.py --out=runs/lc_wide --set=model.dim_cnn=16 --set=model.stoch=32 \
      --set=model.discrete=32      # another size: every run and control uses it; --out remembers it
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from twister_jax.cli import fail as _fail, parse_overrides, with_overrides  # noqa: E402

# what fits in about 1.5 hours on an idle 2-core CPU. Tasks where a policy that has only begun to learn
# can beat random: on 11 of the 26 Atari games every constant action scores below the random policy
# (experiments/baselines.py), and an early greedy policy is nearly constant. docs/learning_check.md:
# the choice, the results (asterix and cartpole_swingup above random, chopper_command not), the costs.
DEFAULT_TASKS = "asterix,chopper_command,cartpole_swingup"
DEFAULT_ENV_STEPS = {"atari": 2_500, "dmc": 3_000}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (runs, logs, report)")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated Atari games / DMC tasks")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--env_steps", default="", help="per-task budget overrides, e.g. boxing=8000,cartpole_balance=12000 "
                   f"(default {DEFAULT_ENV_STEPS['atari']} on Atari, {DEFAULT_ENV_STEPS['dmc']} on DMC)")
    p.add_argument("--evals", type=int, default=2, help="evaluations along the way (the last at the end)")
    p.add_argument("--random_episodes", type=int, default=20, help="episodes of the random policy per task")
    p.add_argument("--seeds_per_process", type=int, default=1,
                   help="consecutive seeds trained by one process (config.num_seeds, one vmapped step)")
    p.add_argument("--parallel", type=int, default=os.cpu_count() or 1, help="training processes at once")
    p.add_argument("--report_only", action="store_true", help="only rebuild the report from the runs there")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override of the small config for every task, e.g. model.dim_cnn=16 (repeatable; the "
                        "key must exist); passed to training as --config.KEY=VALUE and used by the controls")
    args = p.parse_args(argv)
    args.overrides = parse_overrides(args.set)
    return args



def small_config(task: str, overrides=()):
    """`configs/small.py:<task>` with the check's `--set` overrides. Raises ValueError for an unknown task;
    an unknown key exits with status 2."""
    from twister_jax.config_files import load_config

    return with_overrides(load_config(REPO / "configs" / "small.py", task), overrides)


def plan(args) -> list[dict]:
    """One entry per (task, seed pack): the train command and its workdir. Raises SystemExit(2) on bad input."""
    from twister_jax.suites import pack_workdir, seed_packs

    budgets = {}
    for item in filter(None, args.env_steps.split(",")):
        name, _, value = item.partition("=")
        if not value.isdigit() or int(value) <= 0:
            _fail(f"--env_steps item {item!r} is not <task>=<positive int>")
        budgets[name] = int(value)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        _fail(f"--seeds={args.seeds!r} is not a comma-separated list of integers")
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = set(budgets) - set(tasks)
    if unknown:
        _fail(f"--env_steps names {sorted(unknown)}, not among --tasks={args.tasks}")
    if args.evals < 1:
        _fail(f"--evals={args.evals} must be at least 1")
    if args.seeds_per_process < 1:
        _fail(f"--seeds_per_process={args.seeds_per_process} must be at least 1")
    out, entries = pathlib.Path(args.out), []
    for task in tasks:
        try:
            config = small_config(task, args.overrides)
        except ValueError as exc:
            _fail(str(exc))
        per_step = config.env.num_envs / config.env_step_every      # env steps per gradient step
        budget = budgets.get(task, DEFAULT_ENV_STEPS[config.env.suite])
        steps = max(1, int(round(budget / per_step)))
        eval_every = max(1, steps // args.evals)
        for pack in seed_packs(sorted(set(seeds)), args.seeds_per_process):
            name, group = pack_workdir(pack)
            workdir = out / "runs" / task / name
            cmd = [sys.executable, "-m", "twister_jax.train", f"--config=configs/small.py:{task}",
                   f"--workdir={workdir}", f"--config.seed={pack[0]}", f"--config.num_train_steps={steps}",
                   f"--config.eval_every={eval_every}", f"--config.checkpoint_every={eval_every}",
                   f"--config.figure_every={eval_every}", *group,
                   *(f"--config.{key}={value if isinstance(value, str) else value!r}" for key, value in args.overrides)]
            entries.append({"task": task, "name": name, "workdir": workdir, "cmd": cmd, "steps": steps,
                            "log": out / "logs" / f"{task}_{name}.log"})
    return entries


def train_all(entries: list[dict], parallel: int) -> list[str]:
    """Runs the unfinished entries, `parallel` at a time; returns the failures' descriptions."""
    from twister_jax.rundir import exit_status, finished

    todo = [e for e in entries if not finished(e["workdir"], e["steps"])]
    running, failures = [], []
    while todo or running:
        while todo and len(running) < parallel:
            e = todo.pop(0)
            e["log"].parent.mkdir(parents=True, exist_ok=True)
            print(f"start {e['task']}/{e['name']}: {shlex.join(e['cmd'])}", flush=True)
            with open(e["log"], "ab") as log:
                proc = subprocess.Popen(e["cmd"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            running.append((e, proc, time.time()))
        time.sleep(2.0)
        for item in list(running):
            e, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            status = exit_status(proc.returncode, e["workdir"], e["steps"]) + (
                f" see {e['log']}" if proc.returncode else "")
            print(f"{status}: {e['task']}/{e['name']} after {(time.time() - t0) / 60:.1f} min", flush=True)
            if proc.returncode != 0:
                failures.append(f"{e['task']}/{e['name']}: exit {proc.returncode} ({e['log']})")
    return failures


def _cached(path: pathlib.Path, compute, valid=lambda cached: True) -> dict:
    """The JSON at `path` if it exists and is `valid`, else `compute()` written there atomically."""
    from twister_jax.files import atomic_write_json

    if path.exists():
        cached = json.loads(path.read_text())
        if valid(cached):
            return cached
    res = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, res)
    return res


def random_baseline(out: pathlib.Path, task: str, episodes: int, overrides=()) -> dict:
    """The random policy's episodes for `task` (cached in out/random/<task>.json)."""
    from twister_jax.random_policy import random_returns

    return _cached(out / "random" / f"{task}.json",
                   lambda: random_returns(small_config(task, overrides), episodes),
                   lambda cached: len(cached["returns"]) == episodes)


def initial_baseline(out: pathlib.Path, task: str, seed: int, overrides=()) -> dict:
    """The untrained agent's greedy episodes for (task, seed) (cached in out/initial/<task>_seed_<s>.json)."""
    from twister_jax.random_policy import initial_returns

    def compute():
        config = small_config(task, overrides)
        with config.unlocked():
            config.seed = int(seed)
        return initial_returns(config, int(config.eval_episodes))

    return _cached(out / "initial" / f"{task}_seed_{seed}.json", compute)


def probe_baseline(out: pathlib.Path, task: str, run: dict) -> dict | None:
    """The world-model probe of a finished run's final checkpoint (cached in out/probe/<task>_seed_<s>.json),
    or None when the run has no readable checkpoint."""
    from twister_jax import probe

    final_step = run["scores"][-1]["step"] if run["scores"] else None
    try:
        return _cached(out / "probe" / f"{task}_seed_{run['seed']}.json", lambda: probe.probe_run(run["dir"]),
                       lambda cached: cached.get("step") == final_step)
    except (FileNotFoundError, ValueError) as exc:
        print(f"probe of {run['dir']} skipped: {exc}", file=sys.stderr)
        return None


def _probes(out: pathlib.Path, task: str, runs: list[dict]) -> dict:
    """{seed: probe} of the task's finished runs that could be probed."""
    found = {r["seed"]: probe_baseline(out, task, r) for r in runs if r["finished"]}
    return {seed: p for seed, p in found.items() if p is not None}


def versions() -> str:
    import importlib.metadata as md
    names = ("jax", "jaxlib", "flax", "optax", "ale-py", "dm_control", "mujoco", "numpy")
    found = []
    for n in names:
        try:
            found.append(f"{n} {md.version(n)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join([f"Python {platform.python_version()}"] + found)


def same_overrides(out: pathlib.Path, overrides, write: bool):
    """Refuses (exit 2) an --out whose runs and cached controls were made with other `--set` overrides (a
    folder without ``overrides.json`` was made with none); with `write`, records them there."""
    from twister_jax.files import atomic_write_json

    mine = {key: value for key, value in overrides}
    path = out / "overrides.json"
    theirs = json.loads(path.read_text()) if path.exists() else ({} if (out / "runs").exists() else None)
    if theirs is not None and json.loads(json.dumps(mine)) != theirs:
        _fail(f"--out={out} holds a check made with --set overrides {theirs}, not {mine}; use another --out")
    if write:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, mine)


def main(argv=None) -> int:
    args = parse_args(argv)
    entries = plan(args)
    out = pathlib.Path(args.out)
    same_overrides(out, args.overrides, write=not args.report_only)
    t0 = time.time()
    failures = [] if args.report_only else train_all(entries, max(1, args.parallel))
    from twister_jax.reports import learning

    tasks = list(dict.fromkeys(e["task"] for e in entries))
    budget = {e["task"]: e["steps"] for e in entries}
    runs = {t: learning.read_runs(out / "runs" / t, budget[t]) for t in tasks}
    summary = {
        "tasks": [learning.task_summary(t, runs[t],
                                        random_baseline(out, t, args.random_episodes, args.overrides),
                                        {r["seed"]: initial_baseline(out, t, r["seed"], args.overrides)
                                         for r in runs[t]},
                                        _probes(out, t, runs[t]))
                  for t in tasks],
        "overrides": {key: value for key, value in args.overrides},
        "command": shlex.join(["python", "experiments/learning_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "versions": versions(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "date": time.strftime("%Y-%m-%d"),
        "wall_time_s": None if args.report_only else time.time() - t0,
        "failures": failures,
    }
    learning.write(out, summary, runs)
    print(learning.markdown(summary))
    print(json.dumps({"learning_check": [{k: e[k] for k in ("task", "final_mean", "random_mean", "p_value")}
                                         for e in summary["tasks"]]}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
