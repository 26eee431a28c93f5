"""How fast does a world model learn to see? Trains the world model alone on a finished run's replay.

Takes the replay of a run's newest checkpoint (frames of a real task, fixed), starts a fresh world model
from the run's config with `--set` overrides (sizes, learning rate, ...), trains only the world-model
loss on batches from that replay, and every `--probe_every` steps probes it on one held batch
(`twister_jax.probe`: distinct posterior codes, image loss against the mean frame, AC-CPC accuracy,
the reward head's correlation with the real rewards).
No actor, critic or env: it measures the world model's side of a config in minutes.

    python experiments/world_model_fit.py runs/learning_check/runs/asterix/seed_0 --steps=800
    python experiments/world_model_fit.py RUN --steps=800 --set=model.dim_cnn=16 --set=optim.world_model.lr=3e-4

Prints a table (one row per probe) and a JSON line.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from twister_jax.cli import fail as _fail, parse_overrides, with_overrides  # noqa: E402



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdir", help="a solo run directory whose newest checkpoint holds a replay")
    p.add_argument("--steps", type=int, default=800, help="world-model gradient steps")
    p.add_argument("--probe_every", type=int, default=100, help="gradient steps between probes")
    p.add_argument("--windows", type=int, default=16, help="windows of the held probe batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh world model and of the step keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. model.dim_cnn=16 (repeatable; the key must exist)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.probe_every < 1 or args.windows < 1:
        _fail(f"--steps={args.steps}, --probe_every={args.probe_every} and --windows={args.windows} must be at least 1")
    if not (pathlib.Path(args.workdir) / "config.json").is_file():
        _fail(f"{args.workdir} is not a run directory (no config.json)")
    args.overrides = parse_overrides(args.set)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    from twister_jax import agent as agent_lib, probe, updates

    try:
        run_spec, run_step, _, replay = probe.load_run(args.workdir)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    config = with_overrides(run_spec.config, args.overrides)
    spec = agent_lib.AgentSpec.from_config(config)
    state = agent_lib.init_train_state(spec, jax.random.key(args.seed))
    params, opt_state = state.params["world_model"], state.opt_state["world_model"]
    step_fn = jax.jit(lambda p, o, b, k: updates.world_model_update(spec, p, o, b, k)[:2])
    held = replay.sample(args.windows)
    key = jax.random.key(args.seed)
    probe_fn, probe_key = probe.make_probe(spec), jax.random.fold_in(key, 1 << 30)
    print(f"world model of {args.workdir} (replay of step {run_step}: {replay.num_windows} windows), "
          f"overrides {dict(args.overrides) or 'none'}")
    print(f"{'step':>6} {'codes':>6} {'top':>5} {'image':>8} {'mean-frame':>10} {'post_ent':>8} {'acc_con':>8} "
          f"{'rew_corr':>8} {'wall_s':>7}")
    rows, t0 = [], time.time()
    for i in range(args.steps + 1):
        if i % args.probe_every == 0 or i == args.steps:
            row = {"step": i, **probe_fn(params, held, probe_key),
                   "wall_s": round(time.time() - t0, 1)}
            rows.append(row)
            print(f"{i:>6} {row['distinct_codes']:>6} {row['top_code_share']:>5.2f} {row['image_loss']:>8.1f} "
                  f"{row['mean_frame_loss']:>10.1f} {row['post_entropy']:>8.2f} {row['acc_con']:>8.3f} "
                  f"{'-' if row['reward_corr'] is None else format(row['reward_corr'], '.3f'):>8} "
                  f"{row['wall_s']:>7.1f}", flush=True)
        if i < args.steps:
            params, opt_state = step_fn(params, opt_state, replay.sample(int(config.batch_size)),
                                        jax.random.fold_in(key, i))
    print(json.dumps({"workdir": str(args.workdir), "overrides": dict(args.overrides), "frames": rows[0]["frames"],
                      "probes": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
