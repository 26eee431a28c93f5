"""Per-task and aggregate tables (rows of dicts) and their Markdown / CSV renderings. No jax import.

Per-task table (one row per task with at least one finished run): number of seeds, mean and sample
standard deviation (ddof=1; blank with one seed) of the final score over seeds, the final
evaluation's env steps, and for Atari the random and human references, HNS (mean and std over seeds;
HNS is affine in the score, so mean HNS = HNS of the mean score) and the published per-game scores
of other agents (shipped table, `scores.atari_reference`).
"""
from __future__ import annotations

import csv
import math

import numpy as np

from twister_jax.reports import runs as runs_lib
from twister_jax.reports import scores as scores_lib


def _std(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.std(x, ddof=1)) if x.size > 1 else math.nan


def _steps_label(values) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def per_task_rows(tree: runs_lib.RunTree) -> list[dict]:
    """One dict per task with finished runs (keys in display order)."""
    ref = scores_lib.atari_reference() if tree.suite == "atari100k" else None
    rows = []
    for task, task_runs in tree.runs.items():
        finals = [r.final_return for r in task_runs]
        row = {"task": task, "seeds": len(task_runs),
               "mean": float(np.mean(finals)), "std": _std(finals),
               "env_steps": _steps_label([int(r.final["env_steps"]) for r in task_runs])}
        if ref is not None:
            hns = scores_lib.human_normalized(task, finals)
            row.update(random=ref.random[task], human=ref.human[task],
                       hns=float(np.mean(hns)), hns_std=_std(hns))
            for agent in ref.agents:
                row[agent] = ref.published[agent].get(task, math.nan)
        rows.append(row)
    return rows


def final_score_rows(tree: runs_lib.RunTree) -> list[dict]:
    """One dict per finished run: its final evaluation."""
    rows = []
    for task, task_runs in tree.runs.items():
        for r in task_runs:
            f = r.final
            row = {"task": task, "seed": r.seed, "step": f["step"], "env_steps": f["env_steps"],
                   "frames": f.get("frames", ""), "return_mean": f["return_mean"],
                   "return_std": f.get("return_std", ""), "episodes": f.get("episodes", "")}
            if tree.suite == "atari100k":
                row["hns"] = float(scores_lib.human_normalized(task, f["return_mean"]))
            rows.append(row)
    return rows


def fmt(value, digits: int) -> str:
    """Number for Markdown: fixed digits; NaN / None / '' as an en dash."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, np.integer)) or isinstance(value, str):
        return str(value)
    return f"{value:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def per_task_markdown(rows: list[dict], suite: str) -> str:
    if not rows:
        return "(no finished runs)"
    if suite == "atari100k":
        agents = list(scores_lib.atari_reference().agents)
        header = ["game", "seeds", "ours mean", "ours std", "env steps", "random", "human", "HNS", "HNS std"] + agents
        body = [[r["task"], fmt(r["seeds"], 0), fmt(r["mean"], 1), fmt(r["std"], 1), r["env_steps"],
                 fmt(r["random"], 1), fmt(r["human"], 1), fmt(r["hns"], 3), fmt(r["hns_std"], 3)]
                + [fmt(r[a], 1) for a in agents] for r in rows]
    else:
        header = ["task", "seeds", "ours mean", "ours std", "env steps"]
        body = [[r["task"], fmt(r["seeds"], 0), fmt(r["mean"], 1), fmt(r["std"], 1), r["env_steps"]] for r in rows]
    return markdown_table(header, body)


def write_csv(path, rows: list[dict]) -> None:
    """Writes rows (dicts sharing keys) as CSV; NaN as an empty cell."""
    if not rows:
        path.write_text("")
        return
    keys = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
