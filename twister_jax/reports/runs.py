"""Reads a suite's run tree `ROOT/<task>/seed_<n>/` (docs/interfaces.md §6) into final scores.

Runs of a process that trained several seeds (`config.num_seeds`, packed by `experiments/run_suite.py`)
live one level deeper, in `ROOT/<task>/seeds_<a>-<b>/seed_<n>/`, and count the same. A seed found twice
under one task (e.g. a solo run and a group's run) counts once, the first in path order; the other is
excluded by name.

Each run directory holds `config.json` (resolved config; `env.suite`, `env.task`), `scores.jsonl`
(one row per evaluation: step, env_steps, frames, return_mean, return_std, episodes, returns,
length_mean) and, once the run has finished, `done.json` (written last, atomically).

A run counts when `done.json` exists, its config's suite is the report's suite, its config's task
equals the directory's task, and `scores.jsonl` has at least one well-formed row. Its final score is
the `return_mean` of the row with the largest `step` (the original's protocol, docs/original.md §1.3: mean return
over the evaluation episodes at the end of training). Everything else is *excluded by name with a
reason*, never averaged: unfinished runs, other-suite runs, unknown task directories, missing files,
and tasks of the suite with no finished run.

Directories whose name starts with `_` or `.` (e.g. the launcher's `_suite_logs`) and the report's
own output folder are not run directories and are skipped without a note. No jax import.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import re

from twister_jax.reports import scores as scores_lib

_SEED_DIR = re.compile(r"^seed_(\d+)$")
_GROUP_DIR = re.compile(r"^seeds_(\d+)-(\d+)$")   # a process that trained several seeds (config.num_seeds)


def seed_dirs(task_dir: pathlib.Path) -> tuple[list[tuple[int, pathlib.Path]], list[pathlib.Path]]:
    """The `seed_<n>` run directories of a task folder, also inside group folders `seeds_<a>-<b>/`,
    and the other child folders (not runs).

    Returns:
      ([(seed, path)] sorted by seed then path, [other folders]).
    """
    found, others = [], []
    for child in sorted(p for p in task_dir.iterdir() if p.is_dir()):
        if _SEED_DIR.match(child.name):
            found.append((int(_SEED_DIR.match(child.name).group(1)), child))
        elif _GROUP_DIR.match(child.name):
            found += [(int(_SEED_DIR.match(g.name).group(1)), g) for g in sorted(child.iterdir())
                      if g.is_dir() and _SEED_DIR.match(g.name)]
        else:
            others.append(child)
    return sorted(found), others


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished run.

    Attributes:
      task: snake_case task id.  seed: from the directory name `seed_<n>`.
      path: the run directory.   rows: scores.jsonl rows sorted by `step`.
      final: the last row (the final evaluation).
    """

    task: str
    seed: int
    path: pathlib.Path
    rows: tuple[dict, ...]

    @property
    def final(self) -> dict:
        return self.rows[-1]

    @property
    def final_return(self) -> float:
        return float(self.final["return_mean"])


@dataclasses.dataclass(frozen=True)
class Excluded:
    """A directory (or task) left out of the report, and why."""

    name: str
    reason: str


@dataclasses.dataclass
class RunTree:
    """Result of `scan`: finished runs by task, exclusions, and suite tasks without a finished run."""

    suite: str
    runs: dict[str, list[Run]]
    excluded: list[Excluded]
    missing_tasks: list[str]


def _config_get(config: dict, dotted: str):
    """`config["env"]["suite"]`, or a flat `config["env.suite"]`; None if absent."""
    if dotted in config:
        return config[dotted]
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def read_scores(path: pathlib.Path) -> list[dict]:
    """Rows of a scores.jsonl file sorted by `step`.

    Raises:
      ValueError naming the line of a malformed row (bad JSON or a missing field).
    """
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"line {i} is not JSON ({e.msg})") from None
        for key in ("step", "env_steps", "return_mean"):
            if key not in row:
                raise ValueError(f"line {i} lacks {key!r}")
        rows.append(row)
    return sorted(rows, key=lambda r: r["step"])


def _read_run(seed_dir: pathlib.Path, rel: str, suite: str, dir_task: str | None, seed: int):
    """Returns a Run or an Excluded for one seed directory."""
    config_path = seed_dir / "config.json"
    if not config_path.exists():
        return Excluded(rel, "missing config.json")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError:
        return Excluded(rel, "config.json is not valid JSON")
    env_suite = _config_get(config, "env.suite")
    run_suite = scores_lib.suite_of_env(str(env_suite))
    if run_suite != suite:
        return Excluded(rel, f"other suite (config env.suite={env_suite!r}, report suite {suite})")
    try:
        task = scores_lib.normalize_task(suite, str(_config_get(config, "env.task")))
    except ValueError:
        return Excluded(rel, f"unknown {suite} task in config (env.task={_config_get(config, 'env.task')!r})")
    if dir_task != task:
        return Excluded(rel, f"directory name does not match config env.task={task!r}")
    if not (seed_dir / "done.json").exists():
        return Excluded(rel, "unfinished (no done.json)")
    scores_path = seed_dir / "scores.jsonl"
    if not scores_path.exists():
        return Excluded(rel, "finished but missing scores.jsonl")
    try:
        rows = read_scores(scores_path)
    except ValueError as e:
        return Excluded(rel, f"malformed scores.jsonl: {e}")
    if not rows:
        return Excluded(rel, "finished but scores.jsonl has no evaluation")
    return Run(task, seed, seed_dir, tuple(rows))


def scan(root, suite: str, skip: tuple = ()) -> RunTree:
    """Collects the finished runs of `suite` under `root` and names everything left out.

    Args:
      root: folder holding `<task>/seed_<n>/` run directories.
      suite: `atari100k` or `dmc` (aliases as `scores.normalize_suite`).
      skip: folders under root that are not runs (e.g. the report's output folder).

    Returns:
      RunTree; `runs[task]` sorted by seed; `excluded` sorted by name.
    """
    suite = scores_lib.normalize_suite(suite)
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"run root {root} is not a directory")
    skip = {pathlib.Path(s).resolve() for s in skip}
    runs: dict[str, list[Run]] = {}
    excluded: list[Excluded] = []
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if task_dir.name.startswith(("_", ".")) or task_dir.resolve() in skip:
            continue
        try:
            dir_task = scores_lib.normalize_task(suite, task_dir.name)
        except ValueError:
            dir_task = None
        found, others = seed_dirs(task_dir)
        if not found:
            excluded.append(Excluded(task_dir.name, "no seed_<n> run directories"))
            continue
        for p in others:
            excluded.append(Excluded(f"{task_dir.name}/{p.name}", "not a seed_<n> run directory"))
        counted: dict[int, str] = {}
        for seed, seed_dir in found:
            rel = seed_dir.relative_to(root).as_posix()
            result = _read_run(seed_dir, rel, suite, dir_task, seed)
            if isinstance(result, Excluded):
                excluded.append(result)
            elif seed in counted:
                excluded.append(Excluded(rel, f"seed {seed} is already counted from {counted[seed]}"))
            else:
                counted[seed] = rel
                runs.setdefault(result.task, []).append(result)
    for task_runs in runs.values():
        task_runs.sort(key=lambda r: r.seed)
    ordered = {t: runs[t] for t in scores_lib.SUITE_TASKS[suite] if t in runs}
    missing = [t for t in scores_lib.SUITE_TASKS[suite] if t not in runs]
    return RunTree(suite, ordered, sorted(excluded, key=lambda e: e.name), missing)
