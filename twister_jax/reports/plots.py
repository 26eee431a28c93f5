"""PNG figures of a score report, drawn with matplotlib's Agg backend (no display needed). No jax.

* aggregates.png: one panel per metric (mean, median, IQM); our point estimate with its 95% interval
  as a bar, published agents' point estimates (over the same games) as dots.
* per_task.png: per-task bars of the mean over seeds with the standard deviation over seeds as error
  bars (Atari: HNS, with the human level at 1; DMC: raw return).
* learning_curves.png: a grid, one panel per task: evaluation return against env steps, mean over
  seeds with a band of +-1 standard deviation (where only one seed evaluated at a point, no band);
  Atari panels mark the human (red) and random (grey) scores with dotted lines.
"""
from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from twister_jax.reports import aggregate as agg  # noqa: E402
from twister_jax.reports import runs as runs_lib  # noqa: E402
from twister_jax.reports import scores as scores_lib  # noqa: E402


def plot_aggregates(path: pathlib.Path, rows: list[dict], suite: str) -> None:
    unit = "HNS" if suite == "atari100k" else "return"
    ours, others = rows[0], [r for r in rows[1:]]
    labels = [ours["agent"]] + [r["agent"] for r in others]
    fig, axes = plt.subplots(1, len(agg.METRICS), figsize=(4.2 * len(agg.METRICS), 0.45 * len(labels) + 1.6),
                             sharey=True)
    y = np.arange(len(labels))[::-1]
    for ax, m in zip(np.atleast_1d(axes), agg.METRICS):
        lo, hi = ours[f"{m}_lo"], ours[f"{m}_hi"]
        ax.barh(y[0], hi - lo, left=lo, height=0.6, color="tab:blue", alpha=0.5)
        ax.plot([ours[m]] * 2, [y[0] - 0.3, y[0] + 0.3], color="k", lw=2)
        for yi, r in zip(y[1:], others):
            if not (isinstance(r[m], float) and math.isnan(r[m])):
                ax.plot(r[m], yi, "o", color="tab:gray")
        if suite == "atari100k":
            ax.axvline(1.0, color="tab:red", ls=":", lw=1)
        ax.set_title(f"{agg.METRIC_LABELS[m]} {unit}")
        ax.grid(axis="x", alpha=0.3)
    np.atleast_1d(axes)[0].set_yticks(y, labels)
    fig.suptitle(f"{suite}: aggregates with 95% stratified bootstrap CIs (ours) / published points")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_per_task(path: pathlib.Path, per_task: list[dict], suite: str) -> None:
    key = "hns" if suite == "atari100k" else "mean"
    err = "hns_std" if suite == "atari100k" else "std"
    names = [r["task"] for r in per_task]
    vals = np.array([r[key] for r in per_task])
    errs = np.nan_to_num(np.array([r[err] for r in per_task], dtype=np.float64))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4.5))
    x = np.arange(len(names))
    colors = ["tab:green" if (suite == "atari100k" and v > 1) else "tab:blue" for v in vals]
    ax.bar(x, vals, yerr=errs, color=colors, capsize=2)
    if suite == "atari100k":
        ax.axhline(1.0, color="tab:red", ls=":", lw=1, label="human")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.legend()
    ax.set_xticks(x, names, rotation=60, ha="right")
    ax.set_ylabel("human-normalised score" if suite == "atari100k" else "return")
    ax.set_title(f"{suite}: final score per task (mean and std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve(task_runs: list[runs_lib.Run]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(env_steps, mean, std, count) over seeds at each evaluated env step (std 0 with one seed)."""
    by_step: dict[int, list[float]] = {}
    for r in task_runs:
        for row in r.rows:
            by_step.setdefault(int(row["env_steps"]), []).append(float(row["return_mean"]))
    steps = np.array(sorted(by_step))
    vals = [np.array(by_step[s]) for s in steps]
    return (steps, np.array([v.mean() for v in vals]),
            np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in vals]), np.array([v.size for v in vals]))


def plot_learning_curves(path: pathlib.Path, tree: runs_lib.RunTree) -> None:
    tasks = list(tree.runs)
    cols = min(5, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        steps, mean, std, _ = curve(tree.runs[task])
        ax.plot(steps, mean, color="tab:blue", marker=".")
        ax.fill_between(steps, mean - std, mean + std, color="tab:blue", alpha=0.25)
        if tree.suite == "atari100k":
            ref = scores_lib.atari_reference()
            ax.axhline(ref.human[task], color="tab:red", ls=":", lw=1)
            ax.axhline(ref.random[task], color="tab:gray", ls=":", lw=1)
        ax.set_title(f"{task} ({len(tree.runs[task])} seeds)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.supxlabel("env steps")
    fig.supylabel("evaluation return")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_all(out: pathlib.Path, tree: runs_lib.RunTree, per_task: list[dict], agg_rows: list[dict]):
    """Writes the three PNGs into `out`; returns their paths."""
    paths = [out / "aggregates.png", out / "per_task.png", out / "learning_curves.png"]
    plot_aggregates(paths[0], agg_rows, tree.suite)
    plot_per_task(paths[1], per_task, tree.suite)
    plot_learning_curves(paths[2], tree)
    return paths
