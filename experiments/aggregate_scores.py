"""Aggregates a benchmark suite's finished runs into tables, rliable aggregates and plots.

Usage:
  python experiments/aggregate_scores.py --root=runs/atari100k
  python experiments/aggregate_scores.py --root=runs/dmc --suite=dmc --out=reports/dmc
  python experiments/aggregate_scores.py --root=runs/atari100k --reps=2000 --seed=1   # quicker intervals

Reads ROOT/<task>/seed_<n>/{config.json,scores.jsonl,done.json} (docs/interfaces.md §6), takes each finished
run's final evaluation, writes report.md, per_task.csv, final_scores.csv, aggregates.csv,
summary.json and aggregates.png, per_task.png, learning_curves.png into --out (default ROOT/report),
and prints the aggregate table and every run directory left out (unfinished, other suite, missing
files) with its reason. --suite defaults to the suite most run configs under ROOT belong to.
Exit status 1 when no run of the suite has finished.
"""
import argparse
import sys

from twister_jax.reports import report as report_lib


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder holding <task>/seed_<n>/ run directories")
    p.add_argument("--suite", default=None, help="atari100k or dmc (default: the suite of most runs under ROOT)")
    p.add_argument("--out", default=None, help="output folder (default ROOT/report)")
    p.add_argument("--reps", type=int, default=50_000, help="bootstrap replications (rliable default 50000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--no_plots", action="store_true", help="skip the PNG figures")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        rep = report_lib.make_report(args.root, args.suite, args.out, reps=args.reps, seed=args.seed,
                                     plots=not args.no_plots)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    n_runs = sum(len(v) for v in rep.tree.runs.values())
    print(f"{rep.suite}: {n_runs} finished runs over {len(rep.tree.runs)} tasks")
    print(rep.aggregate_markdown)
    left_out = report_lib.exclusion_lines(rep.tree, rep.dropped_from_aggregate)
    if left_out:
        print(f"\nLeft out ({len(left_out)}):")
        print("\n".join(left_out))
    print("\nwrote " + ", ".join(str(f) for f in rep.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
