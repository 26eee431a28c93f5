"""Env stepping and replay sampling speed (issue 3 item 8; docs/interfaces.md §8).

Prints a table: Atari env steps/s (1 env, in-process), DMC env steps/s (1 env in-process, 1 env in a
worker, 4 envs in 4 workers; each with the original's rendering and with `fast_render`), and the
replay buffer's sampling time for a 16 x 64 batch. Env steps/s count agent steps of all envs; CPU ms
per step (all threads of the parent and the workers) hardly depends on other load and gives the
speed-up the workers reach on idle cores: cores x CPU(1 env) / CPU(4 envs).
Targets: 4 DMC envs >= 1.7x one env on 2 cores; replay < 5 ms per batch.

  python experiments/benchmark_envs.py [--steps 200] [--dmc_steps 40] [--game pong] [--task walker_walk]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from twister_jax.envs import VectorEnv, make_env
from twister_jax.suites import ATARI_GAMES, DMC_TASKS


def atari_sps(game: str, steps: int) -> float:
    cfg = dict(suite="atari", task=game, action_repeat=4, time_limit_frames=108_000, noop_max=30, sticky=0.0,
               image_size=(64, 64), num_actions=ATARI_GAMES[game])
    env = make_env(cfg, seed=0)
    rng = np.random.default_rng(0)
    env.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        if env.step(int(rng.integers(env.num_actions))).is_last:
            env.reset()
    dt = time.perf_counter() - t0
    env.close()
    return steps / dt


def dmc_sps(task: str, num_envs: int, workers, steps: int, fast: bool) -> float:
    _, _, a, cam = DMC_TASKS[task]
    cfg = dict(suite="dmc", task=task, action_repeat=2, time_limit_frames=1_000, camera=cam, image_size=(64, 64),
               num_actions=a, fast_render=fast)
    vec = VectorEnv(cfg, list(range(num_envs)), num_workers=workers)
    rng = np.random.default_rng(0)
    vec.reset()
    vec.step(rng.uniform(-1, 1, (num_envs, a)).astype(np.float32))  # warm-up (GL context)
    c0, t0 = vec.cpu_time(), time.perf_counter()
    for _ in range(steps):
        vec.step(rng.uniform(-1, 1, (num_envs, a)).astype(np.float32))
    dt, cpu = time.perf_counter() - t0, vec.cpu_time() - c0
    vec.close()
    return num_envs * steps / dt, 1e3 * cpu / (num_envs * steps)


def replay_ms(batches: int = 50) -> float:
    from twister_jax.replay import ReplayBuffer

    rb = ReplayBuffer(10_000, 64, 1, (64, 64, 3), 18, seed=0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 64, 64, 3), dtype=np.uint8)
    for t in range(5_000):
        rb.add(0, images[t % 64], np.eye(18, dtype=np.float32)[t % 18], 0.5, t % 500 == 0, False)
    rb.sample(16)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(batches):
        batch = rb.sample(16)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert batch["image"].shape == (16, 64, 64, 64, 3), batch["image"].shape
    return 1e3 * dt / batches, 1e3 * cpu / batches


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="Atari agent steps")
    p.add_argument("--dmc_steps", type=int, default=40, help="DMC batched steps per setting")
    p.add_argument("--game", default="pong")
    p.add_argument("--task", default="walker_walk")
    args = p.parse_args(argv)

    rows = [(f"Atari {args.game}, 1 env (in-process)", f"{atari_sps(args.game, args.steps):8.1f} steps/s")]
    for fast in (False, True):
        label = "fast_render" if fast else "original rendering"
        (one, c1), (one_w, c1w), (four, c4) = (dmc_sps(args.task, n, w, args.dmc_steps, fast)
                                               for n, w in ((1, 0), (1, None), (4, None)))
        cores = min(4, os.cpu_count() or 1)
        rows += [(f"DMC {args.task}, 1 env in-process, {label}", f"{one:8.1f} steps/s, {c1:6.1f} CPU ms/step"),
                 (f"DMC {args.task}, 1 env in 1 worker, {label}", f"{one_w:8.1f} steps/s, {c1w:6.1f} CPU ms/step"),
                 (f"DMC {args.task}, 4 envs in 4 workers, {label}",
                  f"{four:8.1f} steps/s, {c4:6.1f} CPU ms/step: {four / one:.2f}x 1 env measured, "
                  f"{cores * c1 / c4:.2f}x projected on {cores} idle cores")]
    wall, cpu = replay_ms()
    rows.append(("Replay sample, batch 16 x 64 (64x64x3 images)", f"{wall:8.2f} ms/batch, {cpu:6.2f} CPU ms/batch"))
    print(f"cores: {os.cpu_count()}, load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}, "
          f"MUJOCO_GL={os.environ.get('MUJOCO_GL', 'egl (default)')}")
    width = max(len(r[0]) for r in rows)
    print(f"| {'setting':<{width}} | result |")
    print(f"|{'-' * (width + 2)}|--------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    main()
