"""Runs a benchmark suite: one training run per ROOT/<task>/seed_<n>, skipping finished ones.

Usage:
  python experiments/run_suite.py --suite=atari100k --seeds=0,1 --root=runs/atari100k --dry_run
  python experiments/run_suite.py --suite=atari100k --seeds=0-4 --root=runs/atari100k --parallel=8
  python experiments/run_suite.py --suite=dmc --seeds=0,1,2 --root=runs/dmc --tasks=walker_walk,cheetah_run \
      --extra="--config.compute_dtype=bfloat16"

Each run is
  python -m twister_jax.train --config=configs/atari.py:<game> --workdir=ROOT/<game>/seed_<n> --config.seed=<n>
(DMC: configs/dmc.py:<task>), started in the repository root, plus the --extra arguments
(`python` is the interpreter running this launcher, sys.executable). A run whose
done.json exists is skipped; any other run (new, or interrupted: no done.json) is started with the same
command, which resumes from its last checkpoint (docs/interfaces.md §6).

Scheduling: sequential by default. --parallel=N keeps N runs going; on GPUs slot i runs on device
i mod D (CUDA_VISIBLE_DEVICES set per run), where the D devices are --devices, else the entries of an
existing CUDA_VISIBLE_DEVICES, else the GPUs `nvidia-smi -L` lists. When several runs share a GPU,
XLA_PYTHON_CLIENT_MEM_FRACTION is set to 0.9 / (runs per GPU) unless the caller set it. Without GPUs
(CPU, or a TPU host) N plain processes start. Each run's output goes to ROOT/_suite_logs/<task>_seed_<n>.log
(appended). A failed run does not stop the others; the exit status is 1 if any run failed.
--dry_run prints the commands to stdout, one per line (skipped runs and the count go to stderr).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

from twister_jax.reports import scores as scores_lib

CONFIG_FILES = {"atari100k": "configs/atari.py", "dmc": "configs/dmc.py"}


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` or `0-4` or `0-2,7` -> sorted unique ints."""
    seeds = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            seeds.update(range(int(lo), int(hi) + 1))
        else:
            seeds.add(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return sorted(seeds)


def plan(suite: str, seeds: list[int], root: pathlib.Path, tasks=None, extra=()):
    """[(task, seed, workdir, argv, finished)] for every task x seed, in suite order then seed."""
    suite = scores_lib.normalize_suite(suite)
    names = [scores_lib.normalize_task(suite, t) for t in tasks] if tasks else scores_lib.SUITE_TASKS[suite]
    runs = []
    for task in names:
        for seed in seeds:
            workdir = root / task / f"seed_{seed}"
            argv = ["python", "-m", "twister_jax.train", f"--config={CONFIG_FILES[suite]}:{task}",
                    f"--workdir={workdir}", f"--config.seed={seed}", *extra]
            runs.append((task, seed, workdir, argv, (workdir / "done.json").exists()))
    return runs


def visible_gpus(devices: str | None = None) -> list[str]:
    """GPU ids to spread runs over: --devices, else CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`."""
    if devices:
        return [d.strip() for d in devices.split(",") if d.strip()]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def run_env(slot: int, gpus: list[str], parallel: int) -> dict:
    """Environment of a run in `slot`: its GPU and, when runs share a GPU, a memory fraction."""
    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        per_gpu = -(-parallel // len(gpus))  # ceil
        if per_gpu > 1 and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / per_gpu:.2f}"
    return env


def execute(todo, root: pathlib.Path, parallel: int, gpus: list[str], poll_s: float = 1.0) -> list[str]:
    """Runs `todo` with at most `parallel` at once; returns the names of failed runs."""
    logs = root / "_suite_logs"
    logs.mkdir(parents=True, exist_ok=True)
    queue, running, failed = list(todo), {}, []
    free = list(range(parallel))
    try:
        while queue or running:
            while queue and free:
                slot = free.pop(0)
                task, seed, _, argv, _ = queue.pop(0)
                argv = [sys.executable] + argv[1:]
                log = open(logs / f"{task}_seed_{seed}.log", "a")
                env = run_env(slot, gpus, parallel)
                gpu = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else ""
                print(f"[start{gpu}] {task}/seed_{seed}: {shlex.join(argv)}", flush=True)
                proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
                running[proc] = (slot, f"{task}/seed_{seed}", log)
            time.sleep(poll_s)
            for proc in [p for p in running if p.poll() is not None]:
                slot, name, log = running.pop(proc)
                log.close()
                free.append(slot)
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                if proc.returncode != 0:
                    failed.append(name)
                print(f"[{status}] {name}", flush=True)
    except KeyboardInterrupt:
        for proc in running:  # only the runs this launcher started
            proc.terminate()
        for proc in running:
            proc.wait()
        raise
    return failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, help="atari100k or dmc")
    p.add_argument("--seeds", default="0", help="e.g. 0,1 or 0-4")
    p.add_argument("--root", required=True, help="suite folder; runs go to ROOT/<task>/seed_<n>")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (default 1: sequential)")
    p.add_argument("--devices", default=None, help="GPU ids to use, e.g. 0,1 (default: all visible)")
    p.add_argument("--extra", default="", help="extra arguments for every run, e.g. '--config.compute_dtype=bfloat16'")
    p.add_argument("--dry_run", action="store_true", help="print the commands and exit")
    args = p.parse_args(argv)
    if args.parallel < 1:
        p.error("--parallel must be >= 1")
    try:
        suite = scores_lib.normalize_suite(args.suite)
        tasks = [t for t in args.tasks.split(",") if t.strip()] if args.tasks else None
        runs = plan(suite, parse_seeds(args.seeds), pathlib.Path(args.root).resolve(), tasks,
                    shlex.split(args.extra))
    except ValueError as e:
        p.error(str(e))
    todo = [r for r in runs if not r[4]]
    for task, seed, _, _, finished in runs:
        if finished:
            print(f"# skip {task}/seed_{seed}: finished (done.json)", file=sys.stderr)
    print(f"# {len(runs)} runs: {len(todo)} to start or resume, {len(runs) - len(todo)} finished",
          file=sys.stderr)
    if args.dry_run:
        for run in todo:
            print(shlex.join(run[3]))
        return 0
    gpus = visible_gpus(args.devices)
    failed = execute(todo, pathlib.Path(args.root).resolve(), args.parallel, gpus)
    if failed:
        print(f"{len(failed)} runs failed: {', '.join(failed)} (logs in {args.root}/_suite_logs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
