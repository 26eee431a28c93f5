"""The learning check's report: greedy returns against the random policy's, per task (host only).

Input: run directories `ROOT/<task>/.../seed_<s>/` (the run-directory contract, docs/interfaces.md §6:
`config.json`, `scores.jsonl`, `done.json`) and, per task, the random policy's per-episode returns on
the same evaluation protocol. For each task:

* the curve: every evaluation's `return_mean` against `env_steps`, per seed, and their mean;
* the final returns: the last evaluation of each finished seed (`return_mean` and its episodes);
* the test: one-sided Welch's t-test of "greedy return > random return" on per-episode returns (the
  final evaluation's episodes of all seeds pooled, against the random episodes), and, as a check that
  does not treat episodes of one seed as independent, how many seeds' final means exceed the random mean;
* a 95% bootstrap interval of the difference of means (episodes resampled within each group);
* the control, when given: each seed's untrained greedy return (its initial train state on the same
  protocol). On some tasks an untrained greedy policy already beats random (cartpole_swingup), so
  "above random" alone does not show learning; `seeds_above_initial` counts the seeds whose final
  return exceeds their own initial one.
* the world model, when probed (`twister_jax.probe` on each seed's final checkpoint and frames of its
  replay): an agent can beat random without seeing, with a world model that draws the mean frame from
  one posterior code for every frame. `seeds_seeing` counts the seeds whose world model's image loss is
  below the mean frame's (it must then encode something of each frame).

`summary(...)` returns the `summary.json` object; `write(...)` writes `report.md`, `summary.json` and
`curves.png`.
"""
from __future__ import annotations

import pathlib

import numpy as np

from twister_jax import rundir
from twister_jax.reports import runs as runs_lib
ALPHA = 0.05


def read_runs(task_dir, num_train_steps: int | None = None) -> list[dict]:
    """Every `seed_<s>` run directory of a task folder (also inside group folders `seeds_<a>-<b>/`,
    `runs.seed_dirs`) that has a config.json, sorted by seed. A run is `finished` when its done.json
    exists and, given `num_train_steps` (the check's budget), its step reaches it (`rundir.finished`).

    Returns:
      [{seed, dir, finished, scores: [scores.jsonl rows by step], wall_time}] (wall_time from done.json
      or None).
    """
    out = []
    for seed, d in runs_lib.seed_dirs(pathlib.Path(task_dir))[0]:
        if not (d / "config.json").exists():
            continue
        rows = runs_lib.read_scores(d / "scores.jsonl") if (d / "scores.jsonl").exists() else []
        done = rundir.finished(d, num_train_steps)
        try:
            wall = float((rundir.read_done(d) or {}).get("wall_time", 0.0)) if done else None
        except ValueError:   # an unreadable done.json (no budget given): finished, time unknown
            wall = 0.0
        out.append({"seed": seed, "dir": str(d), "finished": done, "scores": rows, "wall_time": wall})
    return out


def welch_greater(a, b) -> tuple[float, float]:
    """One-sided Welch's t-test of mean(a) > mean(b): (t, p). p = 1 when either sample has < 2 values."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size < 2 or b.size < 2:
        return float("nan"), 1.0
    if a.std() == 0 and b.std() == 0:  # constant samples: the test is undefined; decide on the means
        return float("inf") if a.mean() > b.mean() else float("-inf"), 0.0 if a.mean() > b.mean() else 1.0
    t, p = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    return float(t), float(p)


def bootstrap_diff(a, b, *, reps: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of mean(a) - mean(b), resampling each group's values."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    da = a[rng.integers(0, a.size, (reps, a.size))].mean(1)
    db = b[rng.integers(0, b.size, (reps, b.size))].mean(1)
    lo, hi = np.percentile(da - db, [2.5, 97.5])
    return float(lo), float(hi)


PROBE_FIELDS = ("step", "frames", "distinct_codes", "image_loss", "mean_frame_loss", "acc_con", "acc_con_chance")
# the agent's learning signal (`twister_jax.probe`, agent=True); absent from probes cached before it
SIGNAL_FIELDS = ("reward_corr", "reward_pred_at_reward", "reward_pred_elsewhere", "value_std", "policy_entropy",
                 "policy_entropy_imagined")


def _signal_text(probe: dict) -> str:
    """", reward corr 0.25, critic std 1.42" for a probe with the agent's signal, else ""."""
    if "value_std" not in probe:
        return ""
    corr = probe.get("reward_corr")
    return f", reward corr {'n/a' if corr is None else format(corr, '.2f')}, critic std {probe['value_std']:.2f}"


def task_summary(task: str, runs: list[dict], random: dict, initial: dict | None = None,
                 probes: dict | None = None) -> dict:
    """The `summary.json` entry of one task (see the module docstring).

    Args:
      runs: `read_runs` of the task; random: {returns: [...]} of the random policy;
      initial: optional {seed: {returns: [...]}}, each seed's untrained greedy episodes;
      probes: optional {seed: `twister_jax.probe` row}, each seed's final world model.
    """
    finished = [r for r in runs if r["finished"] and r["scores"]]
    finals = [r["scores"][-1] for r in finished]
    greedy = [x for f in finals for x in f["returns"]]
    rand = list(random["returns"])
    t, p = welch_greater(greedy, rand)
    lo, hi = bootstrap_diff(greedy, rand) if greedy and rand else (float("nan"), float("nan"))
    random_mean = float(np.mean(rand)) if rand else float("nan")
    per_seed = {str(r["seed"]): float(f["return_mean"]) for r, f in zip(finished, finals)}
    initial_per_seed = {str(s): float(np.mean(v["returns"])) for s, v in (initial or {}).items()}
    probe_per_seed = {str(s): {k: v[k] for k in PROBE_FIELDS + SIGNAL_FIELDS if k in v}
                      for s, v in (probes or {}).items()}
    return {
        "task": task,
        "seeds": [r["seed"] for r in finished],
        "seeds_unfinished": [r["seed"] for r in runs if not r["finished"]],
        "env_steps": int(finals[0]["env_steps"]) if finals else 0,
        "frames": int(finals[0]["frames"]) if finals else 0,
        "final_mean": float(np.mean(greedy)) if greedy else float("nan"),
        "final_std": float(np.std(greedy)) if greedy else float("nan"),
        "final_per_seed": per_seed,
        "greedy_episodes": len(greedy),
        "random_mean": random_mean,
        "random_std": float(np.std(rand)) if rand else float("nan"),
        "random_episodes": len(rand),
        "t": t,
        "p_value": p,
        "diff_ci95": [lo, hi],
        "seeds_above_random": int(sum(v > random_mean for v in per_seed.values())),
        "initial_per_seed": initial_per_seed,
        "initial_mean": float(np.mean(list(initial_per_seed.values()))) if initial_per_seed else float("nan"),
        "seeds_above_initial": int(sum(v > initial_per_seed[s] for s, v in per_seed.items() if s in initial_per_seed)),
        "probe_per_seed": probe_per_seed,
        "seeds_seeing": int(sum(v["image_loss"] < v["mean_frame_loss"] for v in probe_per_seed.values())),
        "learned": bool(p < ALPHA),
        "wall_time_s": _process_wall_time(finished),
    }


def _process_wall_time(runs: list[dict]) -> float:
    """Training wall time summed over processes: the runs of one group (`seeds_<a>-<b>/seed_<s>`) share it."""
    per_process: dict[str, float] = {}
    for r in runs:
        d = pathlib.Path(r["dir"])
        key = str(d.parent) if d.parent.name.startswith("seeds_") else str(d)
        per_process[key] = max(per_process.get(key, 0.0), r["wall_time"] or 0.0)
    return float(sum(per_process.values()))


def curves_png(path, tasks: list[dict], runs: dict) -> None:
    """Learning curves, one panel per task: each seed's evaluations (thin), their mean (thick) and the
    random policy's mean (dashed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
    for ax, entry in zip(axes[0], tasks):
        curves = []
        for r in runs[entry["task"]]:
            x = [row["env_steps"] for row in r["scores"]]
            y = [row["return_mean"] for row in r["scores"]]
            if str(r["seed"]) in entry.get("initial_per_seed", {}):      # the untrained policy at 0 env steps
                x, y = [0] + x, [entry["initial_per_seed"][str(r["seed"])]] + y
            if x:
                ax.plot(x, y, lw=0.8, alpha=0.6, marker="o", ms=3, label=f"seed {r['seed']}")
                curves.append((x, y))
        lengths = {len(x) for x, _ in curves}
        if len(lengths) == 1 and curves:
            ax.plot(curves[0][0], np.mean([y for _, y in curves], 0), lw=2.2, color="k", marker="o", ms=4, label="mean")
        ax.axhline(entry["random_mean"], ls="--", color="tab:red", label="random")
        ax.set_title(f"{entry['task']} (p = {entry['p_value']:.2g})")
        ax.set_xlabel("env steps (agent steps)")
        ax.set_ylabel("greedy return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _above_initial(entry: dict) -> str:
    """'k/n' seeds whose final return beats their own untrained greedy policy's ('-' without the control):
    a policy that beats random untrained (a constant push on cartpole) has not learned by beating it."""
    init = entry.get("initial_per_seed", {})
    n = sum(s in init for s in entry["final_per_seed"])
    return f"{entry['seeds_above_initial']}/{n}" if n else "-"


def markdown(summary: dict) -> str:
    """report.md: the per-task table, the per-seed finals and how the run was made."""
    lines = ["# Learning check", "",
             f"Command: `{summary['command']}`", "",
             f"Config: `configs/small.py:<task>`"
             + (" with " + ", ".join(f"`{k}={v}`" for k, v in summary["overrides"].items())
                if summary.get("overrides") else "") + ".", "",
             f"Machine: {summary['machine']}; versions: {summary['versions']}; date: {summary['date']}.", "",
             "| task | seeds | env steps | greedy final (mean ± std, episodes) | random (mean ± std, episodes) "
             "| Welch t | p (one-sided) | 95% CI of difference | seeds above random "
             "| seeds above their untrained policy | greedy > random (p < 0.05) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in summary["tasks"]:
        lines.append(
            f"| {e['task']} | {len(e['seeds'])} | {e['env_steps']} | {e['final_mean']:.2f} ± {e['final_std']:.2f} "
            f"({e['greedy_episodes']}) | {e['random_mean']:.2f} ± {e['random_std']:.2f} ({e['random_episodes']}) "
            f"| {e['t']:.2f} | {e['p_value']:.3g} | [{e['diff_ci95'][0]:.2f}, {e['diff_ci95'][1]:.2f}] "
            f"| {e['seeds_above_random']}/{len(e['seeds'])} | {_above_initial(e)} | {'yes' if e['learned'] else 'no'} |")
    lines += ["", "Final return per seed (mean over the final evaluation's episodes; in brackets the same "
              "seed's untrained greedy policy, its initial train state on the same protocol):", ""]
    for e in summary["tasks"]:
        init = e.get("initial_per_seed", {})
        per = ", ".join(f"seed {s}: {v:.2f}" + (f" (initial {init[s]:.2f})" if s in init else "")
                        for s, v in e["final_per_seed"].items())
        if init:
            per += f"; {_above_initial(e)} seeds above their initial return"
        lines.append(f"- {e['task']}: {per}" + (f"; unfinished seeds {e['seeds_unfinished']}"
                                                if e["seeds_unfinished"] else ""))
    probed = [e for e in summary["tasks"] if e.get("probe_per_seed")]
    if probed:
        lines += ["", "World model per seed (`experiments/world_model_probe.py` on the final checkpoint and frames of "
                  "its replay): distinct posterior codes, image loss against the loss of drawing the mean frame, "
                  "AC-CPC accuracy against chance; then the agent's learning signal: the reward head's "
                  "correlation with the real rewards and the critic's spread over the states (a head near the "
                  "base rate and a flat critic leave the actor nothing to learn from):", ""]
    for e in probed:
        per = "; ".join(f"seed {s}: {v['distinct_codes']}/{v['frames']} codes, image {v['image_loss']:.1f} vs "
                        f"{v['mean_frame_loss']:.1f}, acc_con {v['acc_con']:.3f} vs {v['acc_con_chance']:.3f}"
                        + _signal_text(v) for s, v in e["probe_per_seed"].items())
        lines.append(f"- {e['task']}: {per}; {e['seeds_seeing']}/{len(e['probe_per_seed'])} world models beat the "
                     f"mean frame" + ("" if e["seeds_seeing"] else
                                      " (none encodes its frames: these returns were reached without seeing)"))
    whole = ("(a report only)" if summary.get("wall_time_s") is None
             else f"{summary['wall_time_s'] / 60:.1f} min")
    lines += ["", f"Wall time of the whole command: {whole}; "
              f"training time summed over runs (from their done.json): "
              f"{sum(e['wall_time_s'] for e in summary['tasks']) / 60:.1f} min.",
              "", "![learning curves](curves.png)", ""]
    return "\n".join(lines)


def write(out, summary: dict, runs: dict) -> None:
    """Writes `summary.json`, `report.md` and `curves.png` into `out`."""
    from twister_jax.files import atomic_write, atomic_write_json

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", summary)
    atomic_write(out / "report.md", markdown(summary).encode())
    curves_png(out / "curves.png", summary["tasks"], runs)
