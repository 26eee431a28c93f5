"""Runs a benchmark suite: one training process per task x seed pack, skipping finished ones.

Usage:
  python experiments/run_suite.py --suite=atari100k --seeds=0,1 --root=runs/atari100k --dry_run
  python experiments/run_suite.py --suite=atari100k --seeds=0-4 --root=runs/atari100k --parallel=8
  python experiments/run_suite.py --suite=atari100k --seeds=0-4 --root=runs/atari100k --seeds_per_process=5
  python experiments/run_suite.py --suite=dmc --seeds=0,1,2 --root=runs/dmc --tasks=walker_walk,cheetah_run \
      --extra="--config.compute_dtype=bfloat16"
  python experiments/run_suite.py --suite=atari100k --seeds=0-4 --root=runs/atari100k --seeds_per_process=5 \
      --launcher=slurm --slurm_partition=gpu --slurm_setup="source ~/venv/bin/activate"

Each process is
  python -m twister_jax.train --config=configs/atari.py:<game> --workdir=ROOT/<game>/seed_<n> --config.seed=<n>
(DMC: configs/dmc.py:<task>), started in the repository root, plus the --extra arguments
(`python` is the interpreter running this launcher, sys.executable). With --seeds_per_process=N the
seeds are packed into groups of at most N consecutive seeds, each trained by one process
(`--config.num_seeds`): `--workdir=ROOT/<game>/seeds_<first>-<last> --config.seed=<first>
--config.num_seeds=<n>`, whose runs write ROOT/<game>/seeds_<first>-<last>/seed_<s>/ (a pack of one seed
is a solo run). `experiments/aggregate_scores.py` reads both layouts. A process whose workdir has
done.json is skipped; any other (new, or interrupted) is started with the same command, which resumes
from its last checkpoint (docs/interfaces.md §6).

Scheduling (--launcher=local, the default): sequential by default. --parallel=N keeps N processes going;
on GPUs slot i runs on device i mod D (CUDA_VISIBLE_DEVICES set per process), where the D devices are
--devices, else the entries of an existing CUDA_VISIBLE_DEVICES, else the GPUs `nvidia-smi -L` lists.
When several processes share a GPU, XLA_PYTHON_CLIENT_MEM_FRACTION is set to 0.9 / (processes per GPU)
unless the caller set it. Without GPUs (CPU, or a TPU host) N plain processes start. Each process's
output goes to ROOT/_suite_logs/<task>_<workdir name>.log (appended). A failed process does not stop
the others; the exit status is 1 if any failed. --dry_run prints the commands to stdout, one per line
(skipped processes and the count go to stderr).

--launcher=slurm writes an sbatch job-array script instead (ROOT/submit_suite.sbatch, or
--slurm_script): one array task per unfinished process, each skipping itself once finished, logging to
its own file, getting SIGTERM five minutes before its time limit (it checkpoints and exits) and
requeued on preemption; submitting the same script again resumes every unfinished task. With
--dry_run the script is printed instead of written.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import subprocess
import sys
import time
from typing import NamedTuple

REPO = pathlib.Path(__file__).resolve().parents[1]

from twister_jax import rundir
from twister_jax.reports import scores as scores_lib
from twister_jax.suites import pack_workdir, seed_packs

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


class Job(NamedTuple):
    """One training process: a solo run (one seed) or a group of consecutive seeds (`config.num_seeds`).

    A solo run's workdir is ROOT/<task>/seed_<s>; a group's is ROOT/<task>/seeds_<first>-<last>, holding
    seed_<s>/ for each of its runs (docs/interfaces.md §6). `finished`: the workdir's done.json exists (and
    reaches the `--config.num_train_steps` of the extra arguments, when they set one: a larger budget extends).
    """

    task: str
    seeds: tuple
    workdir: pathlib.Path
    argv: tuple
    finished: bool

    @property
    def name(self) -> str:
        return f"{self.task}/{self.workdir.name}"


def plan(suite: str, seeds: list[int], root: pathlib.Path, tasks=None, extra=(), per_process: int = 1) -> list[Job]:
    """A Job for every task x seed pack, in suite order then seed."""
    suite = scores_lib.normalize_suite(suite)
    names = [scores_lib.normalize_task(suite, t) for t in tasks] if tasks else scores_lib.SUITE_TASKS[suite]
    jobs, budget = [], budget_of(extra)
    for task in names:
        for pack in seed_packs(seeds, per_process):
            name, group = pack_workdir(pack)
            workdir = root / task / name
            argv = ("python", "-m", "twister_jax.train", f"--config={CONFIG_FILES[suite]}:{task}",
                    f"--workdir={workdir}", f"--config.seed={pack[0]}", *group, *extra)
            jobs.append(Job(task, tuple(pack), workdir, argv, rundir.finished(workdir, budget)))
    return jobs


def budget_of(extra) -> int | None:
    """The `--config.num_train_steps=N` among the extra arguments (the last one), else None (the config's)."""
    found = None
    for arg in extra:
        if arg.startswith("--config.num_train_steps="):
            try:
                found = int(arg.split("=", 1)[1])
            except ValueError:
                raise ValueError(f"{arg} is not an integer number of steps") from None
    return found


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
                job = queue.pop(0)
                argv = [sys.executable, *job.argv[1:]]
                log = open(logs / f"{job.name.replace('/', '_')}.log", "a")
                env = run_env(slot, gpus, parallel)
                gpu = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else ""
                print(f"[start{gpu}] {job.name}: {shlex.join(argv)}", flush=True)
                proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
                running[proc] = (slot, job, log)
            time.sleep(poll_s)
            for proc in [p for p in running if p.poll() is not None]:
                slot, job, log = running.pop(proc)
                log.close()
                free.append(slot)
                status = rundir.exit_status(proc.returncode, job.workdir, budget_of(job.argv))
                if proc.returncode != 0:
                    failed.append(job.name)
                print(f"[{status}] {job.name}", flush=True)
    except KeyboardInterrupt:
        for proc in running:  # only the runs this launcher started
            proc.terminate()
        for proc in running:
            proc.wait()
        raise
    return failed


def slurm_script(jobs: list[Job], root: pathlib.Path, *, partition=None, time_limit="48:00:00", gres="gpu:1",
                 cpus: int = 8, mem=None, max_running=None, setup=None, extra_lines=()) -> str:
    """An sbatch job-array script: array task i runs jobs[i] (its own log, resume-safe).

    Each array task starts in the repository root and skips its job when the workdir's done.json exists
    (unless the commands set `--config.num_train_steps`: then the training command itself tells a run
    finished at that budget from one to extend); otherwise it runs the job's command (a re-run resumes from the last checkpoint), appending to
    ROOT/_suite_logs/<task>_<workdir name>.log. `setup`: a shell line run first (e.g. activating a
    virtual environment; `python` is whatever it puts on PATH). The batch shell becomes the training process (`exec`), so
    SLURM's `--signal=B:TERM@300` reaches it five minutes before the time limit and it saves a checkpoint;
    `--requeue` lets a preempted task start again and resume.
    """
    logs = root / "_suite_logs"
    array = f"0-{len(jobs) - 1}" + (f"%{max_running}" if max_running else "")
    head = ["#!/bin/bash", "#SBATCH --job-name=twister_suite", f"#SBATCH --array={array}",
            f"#SBATCH --time={time_limit}", f"#SBATCH --cpus-per-task={cpus}",
            "#SBATCH --signal=B:TERM@300", "#SBATCH --requeue",
            f"#SBATCH --output={logs}/slurm_%A_%a.out"]
    head += [f"#SBATCH --gres={gres}"] if gres else []
    head += [f"#SBATCH --partition={partition}"] if partition else []
    head += [f"#SBATCH --mem={mem}"] if mem else []
    head += [f"#SBATCH {line}" for line in extra_lines]
    body = [setup] if setup else []   # before `set -u`: activation scripts may read unset variables
    body += ["set -euo pipefail", f"cd {shlex.quote(str(REPO))}", f"mkdir -p {shlex.quote(str(logs))}"]
    body += ["",
            "# one line per array task: workdir, log, command"]
    body.append("WORKDIRS=(" + " ".join(shlex.quote(str(j.workdir)) for j in jobs) + ")")
    body.append("LOGS=(" + " ".join(shlex.quote(str(logs / f"{j.name.replace('/', '_')}.log")) for j in jobs) + ")")
    body.append("COMMANDS=(")
    body += [f"  {shlex.quote(shlex.join(j.argv))}" for j in jobs]
    body += [")", "i=${SLURM_ARRAY_TASK_ID}"]
    if all(budget_of(j.argv) is None for j in jobs):
        body.append('if [ -e "${WORKDIRS[$i]}/done.json" ]; then echo "${WORKDIRS[$i]} is finished"; exit 0; fi')
    body += [
             'exec >> "${LOGS[$i]}" 2>&1',
             'echo "[$(date -u +%FT%TZ)] array task $i (job ${SLURM_ARRAY_JOB_ID:-?}) on $(hostname): ${COMMANDS[$i]}"',
             'eval "exec ${COMMANDS[$i]}"', ""]
    return "\n".join(head + [""] + body)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, help="atari100k or dmc")
    p.add_argument("--seeds", default="0", help="e.g. 0,1 or 0-4")
    p.add_argument("--root", required=True, help="suite folder; runs go to ROOT/<task>/seed_<n>")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    p.add_argument("--seeds_per_process", type=int, default=1,
                   help="consecutive seeds trained by one process (config.num_seeds); default 1")
    p.add_argument("--parallel", type=int, default=1, help="processes at once (default 1: sequential)")
    p.add_argument("--devices", default=None, help="GPU ids to use, e.g. 0,1 (default: all visible)")
    p.add_argument("--extra", default="", help="extra arguments for every run, e.g. '--config.compute_dtype=bfloat16'")
    p.add_argument("--launcher", default="local", choices=("local", "slurm"),
                   help="local: run here; slurm: write an sbatch job-array script (one task per process)")
    p.add_argument("--slurm_script", default=None, help="where to write it (default ROOT/submit_suite.sbatch)")
    p.add_argument("--slurm_partition", default=None)
    p.add_argument("--slurm_time", default="48:00:00", help="time limit of one array task")
    p.add_argument("--slurm_gres", default="gpu:1", help="generic resources per task ('' for none)")
    p.add_argument("--slurm_cpus", type=int, default=8, help="CPUs per task")
    p.add_argument("--slurm_mem", default=None, help="memory per task, e.g. 64G")
    p.add_argument("--slurm_max_running", type=int, default=None, help="array tasks running at once")
    p.add_argument("--slurm_setup", default=None, help="shell line run first in each task, e.g. 'source venv/bin/activate'")
    p.add_argument("--dry_run", action="store_true", help="print the commands (or the SLURM script) and exit")
    args = p.parse_args(argv)
    for flag in ("parallel", "seeds_per_process", "slurm_cpus"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag}={getattr(args, flag)} must be >= 1")
    try:
        suite = scores_lib.normalize_suite(args.suite)
        tasks = [t for t in args.tasks.split(",") if t.strip()] if args.tasks else None
        root = pathlib.Path(args.root).resolve()
        jobs = plan(suite, parse_seeds(args.seeds), root, tasks, shlex.split(args.extra), args.seeds_per_process)
    except ValueError as e:
        p.error(str(e))
    todo = [j for j in jobs if not j.finished]
    for job in jobs:
        if job.finished:
            print(f"# skip {job.name}: finished (done.json)", file=sys.stderr)
    print(f"# {len(jobs)} processes ({sum(len(j.seeds) for j in jobs)} runs): {len(todo)} to start or resume, "
          f"{len(jobs) - len(todo)} finished", file=sys.stderr)
    if args.launcher == "slurm":
        if not todo:
            return 0
        script = slurm_script(todo, root, partition=args.slurm_partition, time_limit=args.slurm_time,
                              gres=args.slurm_gres, cpus=args.slurm_cpus, mem=args.slurm_mem,
                              max_running=args.slurm_max_running, setup=args.slurm_setup)
        if args.dry_run:
            print(script)
            return 0
        path = pathlib.Path(args.slurm_script) if args.slurm_script else root / "submit_suite.sbatch"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(script)
        print(f"wrote {path} ({len(todo)} array tasks); submit it with: sbatch {path}")
        return 0
    if args.dry_run:
        for job in todo:
            print(shlex.join(job.argv))
        return 0
    gpus = visible_gpus(args.devices)
    failed = execute(todo, root, args.parallel, gpus)
    if failed:
        print(f"{len(failed)} processes failed: {', '.join(failed)} (logs in {args.root}/_suite_logs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
