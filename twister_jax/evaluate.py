r"""Evaluate a run: `python -m twister_jax.evaluate --workdir=runs/alien [--episodes=N] [--video=PATH]`.

Loads the newest readable checkpoint of `--workdir` (with the config in its `config.json`), plays
`--episodes` greedy episodes (default: the config's `eval_episodes`) on `min(eval_envs, episodes)`
envs with batched `policy_step` (spec 1.3, INTERFACES §3), and prints one JSON line:
`{"step", "return_mean", "return_std", "episodes", "returns", "length_mean"}`. With `--video=PATH`
(`.mp4` or `.gif`) it writes the first episode's frames.

The keys and episode seeds are those of the in-training evaluation at the checkpoint's step, so
`--episodes=<eval_episodes>` on a finished run reproduces its last `scores.jsonl` row (CPU).
Nothing in the workdir is modified.
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


def evaluate(workdir, episodes=None, video=None, agent=None) -> dict:
    """Library form of the command; returns the printed dict."""
    import jax
    from twister_jax import acting, checkpoint, runtime

    config = load_config(workdir)
    runtime.configure_jax(config)
    if agent is None:
        from twister_jax import agent as agent_lib
        agent = agent_lib.make_agent(config)
    base = jax.random.key(int(config.seed))
    state = agent.init_state(jax.random.fold_in(base, acting.INIT))
    ckpt = checkpoint.Checkpointer(workdir, config, read_only=True)
    restored = ckpt.restore(checkpoint.abstract_like(state), None, None, items=("train",), quarantine=False)
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint in {pathlib.Path(workdir) / 'checkpoints'}")
    episodes = int(episodes or config.eval_episodes)
    n = max(1, min(int(config.eval_envs), episodes))
    from twister_jax.envs.vector import VectorEnv
    envs = VectorEnv(config.env, [acting.env_seed(config.seed, acting.EVAL, 10_000 + i) for i in range(n)])
    try:
        key = jax.random.fold_in(jax.random.fold_in(base, acting.EVAL), restored.step)
        res = acting.run_episodes(agent, restored.train_state.params, config, envs, episodes, key,
                                record_first=video is not None)
    finally:
        envs.close()
    r = np.asarray(res["returns"], np.float64)
    out = {"step": restored.step, "return_mean": float(r.mean()), "return_std": float(r.std()),
           "episodes": int(r.size), "returns": [float(x) for x in r],
           "length_mean": float(np.mean(res["lengths"]))}
    if video is not None:
        write_video(video, res["frames"])
        out["video"] = str(video)
    return out


def main(argv):
    from absl import flags
    del argv
    FLAGS = flags.FLAGS
    try:
        out = evaluate(FLAGS.workdir, FLAGS.episodes, FLAGS.video)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(out), flush=True)


def _define_flags():
    from absl import flags
    flags.DEFINE_string("workdir", None, "Run directory written by twister_jax.train.")
    flags.DEFINE_integer("episodes", None, "Greedy episodes to play (default: the config's eval_episodes).")
    flags.DEFINE_string("video", None, "Write the first episode to this .mp4 or .gif file.")
    flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
    from absl import app, logging as absl_logging
    _define_flags()
    absl_logging.set_verbosity(absl_logging.WARNING)
    app.run(main)
