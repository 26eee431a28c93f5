"""Does a run's world model encode what it sees, and does its agent get a learning signal? On its replay.

Reads the newest checkpoint of each run directory given (a solo run, or one run ``seed_<s>`` of a group,
read from the group's checkpoint) and `--windows` windows from that checkpoint's replay (drawn by the
replay's saved sampler, so the same checkpoint gives the same windows), runs the world-model loss once
(no update), and prints a table and a JSON line
(`twister_jax.probe` explains each number):

    python experiments/world_model_probe.py runs/learning_check/runs/asterix/seed_0 [more run dirs]

Read it as: `codes` = 1 (every frame gets the same posterior mode) with an image loss at or above the
mean-frame loss means the world model draws the average scene and its latent ignores the frame; an
`acc_con` near chance (1/N) means AC-CPC has not learned either. A world model that encodes its frames
has many codes, an image loss below the mean-frame loss and acc_con well above chance.

The second table is the agent's learning signal on the same frames: `rew_corr`, the correlation of the
reward head's prediction with the real reward (and, for sparse rewards, the mean prediction where a
reward came and elsewhere); the critic's mean and std over the states; the policy's entropy on those
states and on imagined roll-outs from them. A reward head at the base rate everywhere and a flat
critic leave the actor nothing to learn from; unlike entropies say the policy meets other states in
imagination than when acting.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from twister_jax.cli import fail as _fail  # noqa: E402



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdirs", nargs="+", help="run directories: solo runs, or runs seed_<s> of a group")
    p.add_argument("--windows", type=int, default=16, help="replay windows to probe (frames = windows x seq_len)")
    p.add_argument("--seed", type=int, default=0, help="seed of the loss's noise (posterior samples, crops)")
    args = p.parse_args(argv)
    if args.windows < 1:
        _fail(f"--windows={args.windows} must be at least 1")
    for w in args.workdirs:
        if not (pathlib.Path(w) / "config.json").is_file():
            _fail(f"{w} is not a run directory (no config.json); pass run directories")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from twister_jax import probe

    rows = []
    for w in args.workdirs:
        try:
            rows.append({"workdir": str(w), **probe.probe_run(w, args.windows, args.seed)})
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
    print(f"{'run':<48} {'step':>7} {'frames':>6} {'codes':>6} {'top':>5} {'image':>8} {'mean-frame':>10} "
          f"{'acc_con':>8} {'chance':>7}")
    for r in rows:
        print(f"{r['workdir'][-48:]:<48} {r['step']:>7} {r['frames']:>6} {r['distinct_codes']:>6} "
              f"{r['top_code_share']:>5.2f} {r['image_loss']:>8.1f} {r['mean_frame_loss']:>10.1f} "
              f"{r['acc_con']:>8.3f} {r['acc_con_chance']:>7.3f}")
    print(f"\n{'run':<48} {'rew_corr':>8} {'rew_real':>8} {'rew_pred':>8} {'at_rew':>7} {'elsewh':>7} "
          f"{'value':>7} {'val_std':>7} {'pi_ent':>6} {'imag':>6}")
    fmt = lambda v, spec: format(v, spec) if v is not None else format("-", spec.split(".")[0].rstrip("f") + "s")  # noqa: E731
    for r in rows:
        print(f"{r['workdir'][-48:]:<48} {fmt(r['reward_corr'], '>8.3f')} {r['reward_real_mean']:>8.3f} "
              f"{r['reward_pred_mean']:>8.3f} {fmt(r['reward_pred_at_reward'], '>7.3f')} "
              f"{fmt(r['reward_pred_elsewhere'], '>7.3f')} {r['value_mean']:>7.2f} {r['value_std']:>7.2f} "
              f"{r['policy_entropy']:>6.2f} {r['policy_entropy_imagined']:>6.2f}")
    print(json.dumps({"probe": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
