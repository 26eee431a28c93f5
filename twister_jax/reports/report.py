"""Builds a suite's score report from a run tree: tables, aggregates with CIs, plots (docs/interfaces.md §6).

`make_report(root, suite, out)` writes into `out`:
  report.md          aggregate table, per-task table, runs left out and why, notes
  per_task.csv       per-task table (ours beside the reference and published per-game scores)
  final_scores.csv   one row per finished run: its final evaluation (and HNS for Atari)
  aggregates.csv     aggregate table
  summary.json       everything above as JSON, plus the exclusions
  aggregates.png, per_task.png, learning_curves.png

Aggregates need a rectangular (runs x tasks) matrix (rliable's layout). When tasks have different
numbers of finished runs, each task keeps its `n` lowest-numbered seeds (n = the smallest count) and
the runs dropped from the aggregate are named in the report; per-task rows still use every finished
run. Rows for published agents are point estimates over the games present in our report, computed
from their per-game mean scores (their per-run scores do not ship, so no interval; their IQM over
per-game means is not the rliable IQM over runs and is marked so). Paper-reported aggregates (docs/original.md
§11.1, confirmed ones only) are listed as printed, over all 26 games. No jax import.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np

from twister_jax.reports import aggregate as agg
from twister_jax.reports import runs as runs_lib
from twister_jax.reports import scores as scores_lib
from twister_jax.reports import tables


@dataclasses.dataclass
class Report:
    """What `make_report` computed (also written to `out`)."""

    suite: str
    tree: runs_lib.RunTree
    per_task: list[dict]
    aggregate_rows: list[dict]
    dropped_from_aggregate: list[str]
    aggregate_markdown: str
    markdown: str
    files: list[pathlib.Path]


def infer_suite(root) -> str:
    """The report suite most run configs under root (`<task>/seed_<n>/config.json`, also in group folders
    `<task>/seeds_<a>-<b>/seed_<n>/`) belong to.

    Runs of the other suite are then left out by `runs.scan` and named in the report.

    Raises:
      ValueError when no run config names a known suite, or both suites have as many runs:
      pass the suite explicitly.
    """
    counts: dict[str, int] = {}
    root = pathlib.Path(root)
    configs = [*root.glob("*/seed_*/config.json"), *root.glob("*/seeds_*/seed_*/config.json")]
    for cfg in configs:
        try:
            env = json.loads(cfg.read_text())
            suite = env.get("env.suite") or env.get("env", {}).get("suite")
        except (json.JSONDecodeError, AttributeError):
            continue
        s = scores_lib.suite_of_env(str(suite))
        if s:
            counts[s] = counts.get(s, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        raise ValueError(f"cannot infer the suite under {root} (run configs per suite: {counts or 'none'}); "
                         "pass --suite=atari100k or --suite=dmc")
    return ranked[0][0]


def score_matrix(tree: runs_lib.RunTree) -> tuple[np.ndarray, list[str], list[str]]:
    """(R, T) matrix of final scores (HNS for Atari, raw return for DMC), task names, dropped runs."""
    tasks = list(tree.runs)
    n = min(len(v) for v in tree.runs.values())
    cols, dropped = [], []
    for task in tasks:
        kept = tree.runs[task][:n]
        dropped += [f"{task}/seed_{r.seed}" for r in tree.runs[task][n:]]
        finals = np.array([r.final_return for r in kept])
        cols.append(scores_lib.human_normalized(task, finals) if tree.suite == "atari100k" else finals)
    return np.stack(cols, axis=1), tasks, dropped


def _published_rows(tasks: list[str]) -> list[dict]:
    ref = scores_lib.atari_reference()
    rows = []
    for agent in ref.agents:
        if not all(t in ref.published[agent] for t in tasks):
            continue
        hns = np.array([float(scores_lib.human_normalized(t, ref.published[agent][t])) for t in tasks])
        rows.append({"agent": agent, "kind": "published per-game means (shipped table; IQM over game means)",
                     "tasks": len(tasks), "runs_per_task": "",
                     "mean": float(hns.mean()), "median": float(np.median(hns)), "iqm": agg.iqm_of(hns),
                     "above_human": agg.games_above_human(hns)})
    for pub in scores_lib.published_aggregates():
        if pub.suite != "atari100k":
            continue
        row = next((r for r in rows if r["agent"] == f"{pub.agent} (paper)"), None)
        if row is None:
            row = {"agent": f"{pub.agent} (paper)", "kind": f"paper-reported: {pub.source}", "tasks": 26,
                   "runs_per_task": "", "mean": math.nan, "median": math.nan, "iqm": math.nan,
                   "above_human": ""}
            rows.append(row)
        row[pub.metric] = pub.value
    return rows


def aggregate_rows(tree: runs_lib.RunTree, *, reps: int, seed: int) -> tuple[list[dict], list[str]]:
    """Our aggregate row (with 95% CIs) followed by the published rows; runs dropped from ours."""
    matrix, tasks, dropped = score_matrix(tree)
    est = agg.interval_estimates(matrix, reps=reps, seed=seed)
    ours = {"agent": "ours (twister_jax)", "kind": f"stratified bootstrap over runs, {reps} reps",
            "tasks": len(tasks), "runs_per_task": matrix.shape[0]}
    for m in agg.METRICS:
        ours[m], ours[f"{m}_lo"], ours[f"{m}_hi"] = est[m].point, est[m].lo, est[m].hi
    ours["above_human"] = agg.games_above_human(matrix) if tree.suite == "atari100k" else ""
    rows = [ours]
    if tree.suite == "atari100k":
        rows += _published_rows(tasks)
    return rows, dropped


def aggregate_markdown(rows: list[dict], suite: str) -> str:
    unit = "HNS" if suite == "atari100k" else "return"
    header = ["agent", "tasks", "runs/task"] + [f"{agg.METRIC_LABELS[m]} {unit} [95% CI]" for m in agg.METRICS]
    digits = 3 if suite == "atari100k" else 1
    if suite == "atari100k":
        header.append("games > human")
    body = []
    for r in rows:
        cells = [r["agent"], tables.fmt(r["tasks"], 0), tables.fmt(r["runs_per_task"], 0)]
        for m in agg.METRICS:
            cell = tables.fmt(r[m], digits)
            if f"{m}_lo" in r:
                cell += f" [{tables.fmt(r[m + '_lo'], digits)}, {tables.fmt(r[m + '_hi'], digits)}]"
            cells.append(cell)
        if suite == "atari100k":
            cells.append(tables.fmt(r["above_human"], 0))
        body.append(cells)
    return tables.markdown_table(header, body)


def exclusion_lines(tree: runs_lib.RunTree, dropped: list[str]) -> list[str]:
    lines = [f"- `{e.name}`: {e.reason}" for e in tree.excluded]
    lines += [f"- `{t}`: missing (no finished run)" for t in tree.missing_tasks]
    lines += [f"- `{d}`: finished, in the per-task table, left out of the aggregate "
              f"(tasks have unequal seed counts; the aggregate keeps the lowest seeds)" for d in dropped]
    return lines


def notes_markdown(suite: str) -> str:
    """How to read the aggregate rows (printed under the tables)."""
    if suite != "atari100k":
        return ("- No published DMC scores ship: docs/original.md §11.2 lists every DMC per-task score (TWISTER and "
                "baselines) as unconfirmed.\n- Standard deviations are over seeds (ddof=1; blank with one seed).")
    return "\n".join([
        "- `ours`: rliable point estimates over the (runs x games) HNS matrix, 95% percentile intervals "
        "from a stratified bootstrap over runs. Games > human: games whose mean HNS over runs is above 1.",
        "- Agent rows without `(paper)`: computed here from the published per-game mean scores in "
        "`twister_jax/data/atari100k_scores.csv`, over the same games as ours; no intervals (per-run scores "
        "are not shipped), and their IQM is over per-game means, not rliable's IQM over runs.",
        "- `(paper)` rows: aggregates as printed in each agent's own paper (docs/original.md §11.1, confirmed ones only), "
        "over all 26 games. They can differ from the row computed from per-game scores (e.g. STORM's paper "
        "prints 126.7% mean / 58.4% median; its per-game table gives 122.2% / 42.5% with these references).",
        "- TWISTER per-game scores and its median are not shipped: docs/original.md §11.2 lists them as unconfirmed.",
        "- HNS = (score - random) / (human - random) with the docs/original.md §11.3 random/human table. Standard "
        "deviations are over seeds (ddof=1; blank with one seed).",
    ])


def make_report(root, suite: str | None = None, out=None, *, reps: int = 50_000, seed: int = 0,
                plots: bool = True) -> Report:
    """Scans `root`, computes tables and aggregates, writes files to `out` (default ROOT/report).

    Raises:
      ValueError when no run of the suite has finished (the exclusions are in the message).
    """
    root = pathlib.Path(root)
    suite = scores_lib.normalize_suite(suite) if suite else infer_suite(root)
    out = pathlib.Path(out) if out else root / "report"
    tree = runs_lib.scan(root, suite, skip=(out,))
    if not tree.runs:
        lines = exclusion_lines(tree, [])
        raise ValueError(f"no finished {suite} run under {root}:\n" + "\n".join(lines))
    per_task = tables.per_task_rows(tree)
    agg_rows, dropped = aggregate_rows(tree, reps=reps, seed=seed)
    agg_md = aggregate_markdown(agg_rows, suite)
    excl = exclusion_lines(tree, dropped)
    unit = "human-normalised score (HNS)" if suite == "atari100k" else "raw return"
    md = "\n\n".join([
        f"# {suite} score report",
        f"Root: `{root}`. Final evaluation of each finished run (mean return over its evaluation episodes "
        f"at the end of training). Aggregates of the {unit}, 95% stratified bootstrap intervals over runs "
        f"(rliable, {reps} reps, seed {seed}).",
        "## Aggregates", agg_md,
        "## Per task", tables.per_task_markdown(per_task, suite),
        "## Left out", "\n".join(excl) if excl else "(nothing)",
        "## Notes", notes_markdown(suite),
    ]) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    files = [out / n for n in ("report.md", "per_task.csv", "final_scores.csv", "aggregates.csv", "summary.json")]
    files[0].write_text(md)
    tables.write_csv(files[1], per_task)
    tables.write_csv(files[2], tables.final_score_rows(tree))
    keys = list(dict.fromkeys(k for r in agg_rows for k in r))
    tables.write_csv(files[3], [{k: r.get(k, math.nan) for k in keys} for r in agg_rows])
    clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    summary = {"suite": suite, "root": str(root), "reps": reps, "seed": seed,
               "aggregates": [{k: clean(v) for k, v in r.items()} for r in agg_rows],
               "per_task": [{k: clean(v) for k, v in r.items()} for r in per_task],
               "excluded": [dataclasses.asdict(e) for e in tree.excluded],
               "missing_tasks": tree.missing_tasks, "dropped_from_aggregate": dropped}
    files[4].write_text(json.dumps(summary, indent=1))
    if plots:
        from twister_jax.reports import plots as plots_lib
        files += plots_lib.write_all(out, tree, per_task, agg_rows)
    return Report(suite, tree, per_task, agg_rows, dropped, agg_md, md, files)
