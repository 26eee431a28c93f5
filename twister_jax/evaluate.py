r"""Evaluate a run: `python -m twister_jax.evaluate --workdir=runs/alien [--episodes=N] [--video=PATH]`.

Loads the newest readable checkpoint of `--workdir` (with the config in its `config.json`), plays
`--episodes` greedy episodes (default: the config's `eval_episodes`) on `min(eval_envs, episodes)`
envs with batched `policy_step` (docs/original.md §1.3, docs/interfaces.md §3), and prints one JSON line:
`{"step", "return_mean", "return_std", "episodes", "returns", "length_mean"}`. With `--video=PATH`
(`.mp4` or `.gif`) it writes the first episode's frames.

The keys and episode seeds are those of the in-training evaluation at the checkpoint's step, so
`--episodes=<eval_episodes>` on a finished run reproduces its last `scores.jsonl` row (CPU).
Nothing in the workdir is modified.

A group's workdir (`config.num_seeds` > 1, docs/architecture.md §9): every run is evaluated, one
JSON line each (with its `seed`), each with that run's parameters, keys and episode seeds (as its
own scores.jsonl); `--seed=<s>` evaluates only the run with seed s. A seed that is not a run of the
workdir is refused (one line, exit status 2); so is `--video` on a group without `--seed`.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np


def load_config(workdir):
    import ml_collections
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a twister_jax run directory?")
    config = ml_collections.ConfigDict(json.loads(path.read_text()))
    config.env.image_size = tuple(config.env.image_size)
    config.augment.crop_scale = tuple(config.augment.crop_scale)
    config.augment.crop_ratio = tuple(config.augment.crop_ratio)
    config.lock()
    return config


def write_video(path, frames, fps: int = 15) -> None:
    """uint8 (H, W, 3) frames -> .gif (Pillow) or .mp4 (OpenCV)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.asarray(f, np.uint8) for f in frames]
    if path.suffix.lower() == ".gif":
        from PIL import Image
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return
    import cv2
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}; use a .gif path instead")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def evaluate(workdir, episodes=None, video=None, agent=None, seed=None):
    """Library form of the command; returns the printed dict, or for a group (without `seed`) the
    list of the runs' dicts."""
    import jax
    from twister_jax import acting, checkpoint, runs, runtime
    from twister_jax.agent import take_run

    config = load_config(workdir)
    runtime.configure_jax(config)
    if agent is None:
        from twister_jax import agent as agent_lib
        agent = agent_lib.make_agent(config)
    group = runs.num_runs(config) > 1
    keys = [jax.random.fold_in(jax.random.key(s), acting.INIT) for s in runs.seeds(config)]
    state = agent.init_state(jax.numpy.stack(keys) if group else keys[0])
    ckpt = checkpoint.Checkpointer(workdir, config, read_only=True)
    restored = ckpt.restore(checkpoint.abstract_like(state), None, None, items=("train",), quarantine=False)
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint in {pathlib.Path(workdir) / 'checkpoints'}")
    params = restored.train_state.params
    if not group:
        return _evaluate_run(config, agent, params, restored.step, episodes, video)
    chosen = [i for i, s in enumerate(runs.seeds(config)) if seed is None or s == int(seed)]
    out = [dict(seed=int(config.seed) + i, **_evaluate_run(runs.run_config(config, i), agent.solo,
                                                            take_run(params, i), restored.step, episodes, video))
           for i in chosen]
    return out[0] if seed is not None else out


def _evaluate_run(config, agent, params, step, episodes, video) -> dict:
    """Greedy episodes of one run (`config` its own, `agent` one-run functions)."""
    import jax
    from twister_jax import acting

    episodes = int(episodes or config.eval_episodes)
    n = max(1, min(int(config.eval_envs), episodes))
    from twister_jax.envs.vector import VectorEnv
    envs = VectorEnv(config.env, [acting.env_seed(config.seed, acting.EVAL, 10_000 + i) for i in range(n)])
    try:
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(int(config.seed)), acting.EVAL), step)
        res = acting.run_episodes(agent, params, config, envs, episodes, key, record_first=video is not None)
    finally:
        envs.close()
    r = np.asarray(res["returns"], np.float64)
    out = {"step": step, "return_mean": float(r.mean()), "return_std": float(r.std()),
           "episodes": int(r.size), "returns": [float(x) for x in r],
           "length_mean": float(np.mean(res["lengths"]))}
    if video is not None:
        write_video(video, res["frames"])
        out["video"] = str(video)
    return out


def check_inputs(workdir, video=None, seed=None) -> None:
    """The checks of the command's inputs that can be made before any work (reads, writes nothing).

    Raises:
      FileNotFoundError / ValueError: a one-line message naming the bad value and what is allowed.
    """
    import importlib.util
    from twister_jax import preflight

    if video is not None:
        suffix = pathlib.Path(video).suffix.lower()
        if suffix not in (".mp4", ".gif"):
            raise ValueError(f"--video={video}: the file name must end in .mp4 or .gif")
        if suffix == ".mp4" and importlib.util.find_spec("cv2") is None:
            raise ValueError(f"--video={video}: .mp4 needs OpenCV (pip install opencv-python-headless); "
                             f"or pass a .gif path")
        preflight.check_writable_dir(pathlib.Path(video).parent, what=f"--video={video}: the folder")
    run = pathlib.Path(workdir)
    if not run.exists():
        raise FileNotFoundError(f"--workdir={workdir} does not exist; pass a run directory written by "
                                f"python -m twister_jax.train")
    if not run.is_dir():
        raise ValueError(f"--workdir={workdir} is a file; pass a run directory written by python -m twister_jax.train")
    path = run / "config.json"
    try:
        load_config(workdir)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        reason = " ".join(str(exc).split())
        raise ValueError(f"{path} is unreadable ({reason}); it must be the config.json that "
                         f"python -m twister_jax.train wrote") from None
    except (KeyError, AttributeError, TypeError) as exc:  # JSON, but not a run config
        reason = " ".join(str(exc).split()).strip("\"'")
        raise ValueError(f"{path} is not a twister_jax run config (no valid {reason!r}); it must be the "
                         f"config.json that python -m twister_jax.train wrote") from None
    from twister_jax import runs
    config = load_config(workdir)
    seeds = runs.seeds(config)
    if seed is not None and int(seed) not in seeds:
        allowed = ", ".join(map(str, seeds))
        raise ValueError(f"--seed={seed} is not a run of {workdir}; allowed: {allowed}")
    if video is not None and seed is None and len(seeds) > 1:
        raise ValueError(f"--video={video} on a group of {len(seeds)} runs needs --seed=<one of "
                         f"{', '.join(map(str, seeds))}>")


def main(argv):
    from absl import flags
    from twister_jax import quiet

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}; every input is a --flag "
              f"(--help lists them)", file=sys.stderr)
        sys.exit(2)
    quiet.quiet_libraries(keep_absl_verbosity=FLAGS["verbosity"].present)
    try:
        check_inputs(FLAGS.workdir, FLAGS.video, FLAGS.seed)
        out = evaluate(FLAGS.workdir, FLAGS.episodes, FLAGS.video, seed=FLAGS.seed)
    except (FileNotFoundError, ValueError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        print(f"error: {'; '.join(lines)}", file=sys.stderr)
        sys.exit(2)
    for row in (out if isinstance(out, list) else [out]):
        print(json.dumps(row), flush=True)


def _define_flags():
    from absl import flags
    flags.DEFINE_string("workdir", None, "Run directory written by twister_jax.train.")
    flags.DEFINE_integer("episodes", None, "Greedy episodes to play, at least 1 (default: the config's "
                         "eval_episodes).", lower_bound=1)
    flags.DEFINE_string("video", None, "Write the first episode to this .mp4 or .gif file.")
    flags.DEFINE_integer("seed", None, "In a group's workdir (config.num_seeds > 1): evaluate only the run "
                         "with this seed (default: every run, one JSON line each).")
    flags.mark_flags_as_required(["workdir"])


def _parse_flags(argv):
    """absl flag parsing with one-line errors (exit status 2) instead of absl's FATAL lines (exit 1)."""
    from absl import flags
    try:
        return flags.FLAGS(argv)
    except flags.Error as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        print(f"error: {lines[-1] if lines else exc} (--help lists the flags)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main, flags_parser=_parse_flags)
