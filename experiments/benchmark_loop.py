"""Benchmark: host time of the real training loop (`twister_jax.loop.Trainer`) per gradient step.

The loop runs on a real game (Atari Alien, `configs/atari.py:alien`: B = 16 windows of T = 64 frames,
one env step after every gradient step, a log row every 100 steps) for `--steps` K gradient steps.

Modes:
* ``null`` (default): a null agent with the `twister_jax.agent.Agent` interface whose device
  functions return at once with correctly shaped outputs: `policy_step` is a tiny jitted function
  (the image still goes to the device and a one-hot action comes back), `train_step` places the batch
  on the devices with `sharding.global_batch` as the real agent does and returns fresh float32 device
  scalars under the real metric names, packed (`metrics.Metrics`), from one small jitted call.
  What is left is the host work a GPU would wait for: the **host floor**.
* ``--real``: the real agent (``--size tiny``: configs/tiny.py widths on Alien; ``--size full``:
  the Atari config) with its time per iteration and the device-busy fraction: the median time of the
  compiled train step plus one policy step, timed alone (blocking), divided by the loop's time per
  iteration (an estimate: the loop's host work overlaps nothing today, so the rest is host time).

Columns (ms per gradient step, over the measured window), timed by wrapping methods from here (the
library has no timing code): ``env`` VectorEnv.step and reset_one (ALE emulation, max-pool,
resize; with ``--overlap``, step_async and step_wait: the wait for the env worker, the rest of its
step overlaps the gradient step); ``add`` ReplayBuffer.add; ``sample`` ReplayBuffer.sample; ``frames`` FrameStore._stage/sync (the
new frames staged for the device copy, `--replay_on_device=on`); ``gather`` the rest of
FrameStore.gather: one dispatch that uploads and stores the new frames and gathers the batch's images
(with the null agent the gather itself, device work, is replaced by a tiny jitted call on the same
slots; the upload and scatter of the new frames stay); ``h2d`` sharding.global_batch (blocked until the arrays exist); ``log`` MetricLog.add/row, Outputs.metrics (metrics.jsonl and
TensorBoard), Progress.update/write; ``act`` the agent's policy_step call; ``train`` the agent's
train_step call minus h2d; ``rest`` everything else (Collector bookkeeping, stack_obs, actions,
the action fetch, the Trainer's schedule); ``total`` wall time per gradient step; ``cpu`` CPU time
of this process (all its threads) per gradient step, which a loaded machine inflates less than
wall time (in-process envs: the env's CPU time is in it).

Measured window: gradient steps ``warmup+1 .. K``. Excluded: start-up, pre-fill (100 windows),
the first ``--warmup`` steps (jit compiles), and the last step's epoch-end work (the evaluation,
checkpoint and figures that the loop does at its last step are skipped by the benchmark;
eval_every, checkpoint_every and figure_every are set beyond K so no other step does them).
Logging every 100 steps is included, as in a real run. Progress is plain (non-tty) unless --tty.

Measured 2026-11-30, 2-core CPU shared with a CPU-heavy job and other tests (wall times inflated
2-5x; `cpu` steadier), jax 0.10.2, ale-py 0.12.1; null agent, Alien, full Atari config, ms per step
(full table and what changed: docs/architecture.md §8):

  before any change (bd8e7d7, K = 2000, median of 3, load 5.5): env 1.55, add 0.05, sample 3.16,
      h2d 6.74, log 1.10, act 0.32, train 0.81, rest 2.71, total 16.4
  interleaved A/B, K = 1000, 3 rounds x 2 repeats, load 11-16, before -> after:
      total 27.4 -> 20.4, cpu 11.0 -> 8.4, h2d 8.2 -> 3.0, log 2.45 -> 0.59 (sample, env unchanged)
  later single rounds (load ~7 / ~5): total 10.0 -> 6.4 / 11.2 -> 7.9, cpu 8.3 -> 6.1 / 11.0 -> 7.8
  QUIET machine (load ~1.2, K = 1000, 2 repeats, before then after): env 1.32 -> 1.35, sample
      2.07 -> 1.72, h2d 3.59 -> 1.34, log 0.71 -> 0.24, rest 1.99 -> 1.02, total 10.3 -> 6.4, cpu 11.1 -> 6.8
  later, other jobs paused (load 1.6-2.7, K = 1000, 2 repeats), total (cpu): 23f4c4f 6.77 (7.20);
      fewer dispatches, --replay_on_device off 5.42 (5.84); --replay_on_device on 2.42 (2.88);
      on + --overlap 2.59 (2.17). Split and what changed: docs/architecture.md §8.
  later (nothing else running, load 0.95-1.5, K = 1000, 3 repeats, two alternating rounds), total:
      4e79e72 2.11 / 2.42; key stream, packed replay records, packed metrics, one frame dispatch
      2.36 / 2.27; over all 28 repeats of the final code that day median 2.36 (1.76-3.53; the
      VM's speed moves the env column alone by 0.27 ms), before: median 2.70 over 26.

Usage:
  python experiments/benchmark_loop.py                           # null agent, Alien, full config
  python experiments/benchmark_loop.py --steps 1000 --repeats 3
  python experiments/benchmark_loop.py --real --size tiny --steps 200
  python experiments/benchmark_loop.py --real --size full --steps 1000   # on a GPU/TPU
  python experiments/benchmark_loop.py --real --size full --num_seeds 5  # 5 seeds in one process
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from twister_jax.cli import fail as _fail  # noqa: E402

COLUMNS = ("env", "add", "sample", "frames", "gather", "h2d", "log", "act", "train", "rest", "total", "cpu")


def make_config(size: str = "full", game: str = "alien", steps: int = 2000, num_seeds: int = 1,
                replay_on_device: str = "on", overlap: bool = False):
    """The Atari config of `game` (`size="full"`) or the tiny widths on it (`"tiny"`), scheduled so
    that no evaluation, checkpoint or figure falls inside `steps` gradient steps; `num_seeds` runs
    in one process (needs `config.num_seeds`); `replay_on_device` as config.replay_on_device."""
    from twister_jax.config_files import load_config
    from twister_jax.suites import ATARI_GAMES, normalize_game

    if size == "full":
        config = load_config(ROOT / "configs" / "atari.py", game)
    elif size == "tiny":
        config = load_config(ROOT / "configs" / "tiny.py", "atari")
        game = normalize_game(game)
        with config.unlocked():
            config.env.task, config.env.num_actions = game, ATARI_GAMES[game]
            config.env.time_limit_frames = 108_000
    else:
        raise ValueError(f"--size {size!r}: allowed full, tiny")
    with config.unlocked():
        config.num_train_steps = int(steps)
        beyond = int(steps) + 1
        config.eval_every = config.checkpoint_every = config.figure_every = beyond
        if "replay_on_device" in config:
            config.replay_on_device = replay_on_device
        if overlap:
            config.overlap_acting = True
        if num_seeds != 1:
            if "num_seeds" not in config:
                raise ValueError("this version has no config.num_seeds (one seed per process)")
            config.num_seeds = int(num_seeds)
    return config


# ------------------------------------------------------------------------------------ null agent
def metric_names(config) -> list:
    """The names of the real train step's metrics (traced, not run, at the tiny widths: the names do
    not depend on the sizes)."""
    import jax
    import jax.numpy as jnp

    from twister_jax import agent as agent_lib, updates
    from twister_jax.config_files import load_config

    tiny = load_config(ROOT / "configs" / "tiny.py", "atari" if config.env.suite == "atari" else "fake")
    spec = agent_lib.AgentSpec.from_config(tiny)
    abstract = jax.eval_shape(functools.partial(agent_lib.init_train_state, spec), jax.random.key(0))
    b, t, a = tiny.batch_size, tiny.seq_len, tiny.env.num_actions
    batch = {"image": jax.ShapeDtypeStruct((b, t, 64, 64, 3), jnp.uint8),
             "action": jax.ShapeDtypeStruct((b, t, a), jnp.float32),
             "reward": jax.ShapeDtypeStruct((b, t), jnp.float32),
             "is_first": jax.ShapeDtypeStruct((b, t), bool),
             "is_terminal": jax.ShapeDtypeStruct((b, t), bool)}
    _, shapes = jax.eval_shape(functools.partial(updates.train_step, spec), abstract, batch, jax.random.key(0))
    return sorted(shapes)


@contextlib.contextmanager
def _null_frame_gather():
    """With the null agent, the frame store's gather (device work) is replaced by a tiny jitted call
    on the same slots (its dispatch stays) returning one cached image array of the right shape."""
    import jax
    import jax.numpy as jnp

    from twister_jax import frame_store

    cache = {}
    touch = jax.jit(lambda slots: slots[..., 0])
    # the new frames' upload and scatter stay (one dispatch, as in the real call)
    insert_touch = jax.jit(lambda store, ns, nf, slots: (frame_store._insert(store, ns, nf), slots[..., 0]),
                           donate_argnums=0)

    def images(store, slots, solo):
        shape = (slots.shape[1:] if solo else slots.shape) + tuple(store.shape[2:])
        if shape not in cache:
            cache[shape] = jnp.zeros(shape, jnp.uint8)
        return cache[shape]

    def gather(store, slots, solo=False):
        touch(slots)
        return images(store, slots, solo)

    def insert_gather(store, new_slots, new_frames, slots, solo=False):
        new_store, _ = insert_touch(store, new_slots, new_frames, slots)
        return new_store, images(new_store, slots, solo)

    with _patched(frame_store, "gather", gather), _patched(frame_store, "insert_gather", insert_gather):
        yield


def make_null_agent(config, names=None):
    """An `Agent` whose device functions return at once (see the module docstring).

    `train_step` places the batch on the devices (`sharding.global_batch`, as the real agent does),
    returns the state it was given with `step + 1` and fresh packed float32 metrics (one small jitted
    call) under the real metric names (`names`, default `metric_names(config)`). `policy_step` sends the images to the
    device and returns a random one-hot action (N, A) from one small jitted call. The real step's
    dispatch over its ~700-leaf TrainState (and, on CPU, the copies of its outputs) is device-side
    work here: it shows in ``--real``.
    """
    import flax.struct
    import jax
    import jax.numpy as jnp

    from twister_jax import agent as agent_lib, sharding
    from twister_jax.policy_dist import PolicyDist

    mesh = sharding.make_mesh()
    names = metric_names(config) if names is None else list(names)
    a = int(config.env.num_actions)

    @flax.struct.dataclass
    class NullTrainState:
        step: int
        params: dict

    @flax.struct.dataclass
    class NullActState:
        action: jax.Array

    @jax.jit
    def _metrics(reward):
        from twister_jax.metrics import Metrics
        mean = jnp.mean(reward)
        return Metrics.pack({k: mean + i for i, k in enumerate(names)})  # packed, as the real step

    def train_step(state, batch, key):
        del key
        if not isinstance(batch["image"], jax.Array):
            batch = sharding.global_batch(batch, mesh)
        # fresh device metrics every step, as the real step returns (a value fetched once is cached
        # on its array, so reusing arrays would hide the cost of fetching them)
        return state.replace(step=state.step + 1), _metrics(batch["reward"])

    @jax.jit
    def _policy(act_state, image, is_first, key):
        del image, is_first
        action = jax.nn.one_hot(jax.random.randint(key, act_state.action.shape[:1], 0, a), a, dtype=jnp.float32)
        return act_state.replace(action=action), action

    def policy_step(params, act_state, image, is_first, key, *, greedy: bool = False):
        del params, greedy
        return _policy(act_state, np.asarray(image), np.asarray(is_first), key)

    return agent_lib.Agent(config=config, init_state=lambda key: NullTrainState(step=0, params={}),
                           train_step=train_step,
                           init_act_state=lambda n: NullActState(action=jnp.zeros((n, a), jnp.float32)),
                           policy_step=policy_step, reset_act_state=lambda s, mask: s,
                           figures=lambda *args, **kw: {}, mesh=mesh, dist=PolicyDist.from_config(config))


# ------------------------------------------------------------------------------------ timers
class Timers:
    """Accumulated seconds per column, counted only while `active`; one level deep (a timed call
    inside another timed call counts for the outer one only)."""

    def __init__(self):
        self.seconds = collections.defaultdict(float)
        self.active = False
        self._inner: list = []  # per open timed call: the time of the timed calls inside it

    def wrap(self, column: str, fn, block: bool = False):
        """`fn` timed into `column`; a timed call inside another counts in its own column only."""
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if not self.active:
                return fn(*args, **kwargs)
            self._inner.append(0.0)
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
                if block:
                    import jax
                    jax.block_until_ready(out)
                return out
            finally:
                dt = time.perf_counter() - t0
                self.seconds[column] += dt - self._inner.pop()
                if self._inner:
                    self._inner[-1] += dt
        return timed


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def measure(config, *, agent=None, warmup: int = 100, tty: bool = False) -> dict:
    """Runs `loop.Trainer` for `config.num_train_steps` steps in a temporary workdir; returns the
    per-gradient-step split in ms (COLUMNS) over steps warmup+1 .. num_train_steps."""
    import jax

    from twister_jax import frame_store, loop, progress, sharding
    from twister_jax.envs.vector import VectorEnv
    from twister_jax.outputs import MetricLog, Outputs
    from twister_jax.replay import ReplayBuffer

    steps = int(config.num_train_steps)
    if not 0 <= warmup < steps:
        raise ValueError(f"warmup={warmup} must be in [0, steps={steps})")
    timers = Timers()
    marks: dict = {}
    orig_train_step, orig_epoch_end = loop.Trainer.train_step, loop.Trainer._epoch_end

    def train_step(self):
        if self.step == warmup:
            timers.active, marks["t0"], marks["c0"] = True, time.perf_counter(), time.process_time()
        orig_train_step(self)

    def epoch_end(self):
        if self.step >= steps:      # the last step: its evaluation / checkpoint / figures excluded
            marks["t1"], marks["c1"] = time.perf_counter(), time.process_time()
            timers.active = False
            return
        orig_epoch_end(self)

    with contextlib.ExitStack() as stack:
        for cls, name, col, block in ((VectorEnv, "step", "env", False), (VectorEnv, "reset_one", "env", False),
                                      (VectorEnv, "step_async", "env", False), (VectorEnv, "step_wait", "env", False),
                                      (ReplayBuffer, "add", "add", False), (ReplayBuffer, "sample", "sample", False),
                                      (MetricLog, "add", "log", False), (MetricLog, "row", "log", False),
                                      (Outputs, "metrics", "log", False),
                                      (progress.Progress, "update", "log", False),
                                      (progress.Progress, "write", "log", False),
                                      (frame_store.FrameStore, "sync", "frames", False),
                                      (frame_store.FrameStore, "_stage", "frames", False),
                                      (frame_store.FrameStore, "gather", "gather", False),
                                      (sharding, "global_batch", "h2d", True)):
            stack.enter_context(_patched(cls, name, timers.wrap(col, getattr(cls, name), block)))
        stack.enter_context(_patched(loop.Trainer, "train_step", train_step))
        stack.enter_context(_patched(loop.Trainer, "_epoch_end", epoch_end))
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="benchmark_loop_"))
        trainer = loop.Trainer(config, workdir, agent=agent, progress=tty)
        ag = trainer.agent
        # the agent's calls: `train` excludes h2d, which is timed inside it
        ag_train, ag_policy = ag.train_step, ag.policy_step

        def timed_train(state, batch, key):
            if not timers.active:
                return ag_train(state, batch, key)
            before = timers.seconds["h2d"]
            t0 = time.perf_counter()
            try:
                return ag_train(state, batch, key)
            finally:
                timers.seconds["train"] += time.perf_counter() - t0 - (timers.seconds["h2d"] - before)

        import dataclasses
        trainer.agent = dataclasses.replace(ag, train_step=timed_train,
                                            policy_step=timers.wrap("act", ag_policy))
        runs = getattr(trainer, "runs", None)
        collectors = [trainer.collector] if runs is None else [r.collector for r in runs]
        for c in collectors:
            if c.agent is ag:  # a solo run acts through the collector (a group acts in the Trainer)
                c.agent = trainer.agent
        trainer.run()
    ms = {k: 1e3 * v / (steps - warmup) for k, v in timers.seconds.items()}
    total = 1e3 * (marks["t1"] - marks["t0"]) / (steps - warmup)
    row = {k: ms.get(k, 0.0) for k in COLUMNS[:-3]}
    row["rest"] = total - sum(row.values())
    row["total"] = total
    row["cpu"] = 1e3 * (marks["c1"] - marks["c0"]) / (steps - warmup)
    row["steps"] = steps - warmup
    del jax
    return row


def device_busy(config, agent, repeats: int = 5) -> dict:
    """Median ms of the compiled train step and of one policy step, each timed alone (blocking)."""
    import jax
    import numpy as np

    state = agent.init_state(jax.random.key(0))
    rng = np.random.default_rng(0)
    b, t, a = config.batch_size, config.seq_len, config.env.num_actions
    batch = {"image": rng.integers(0, 256, (b, t, 64, 64, 3), dtype=np.uint8),
             "action": np.eye(a, dtype=np.float32)[rng.integers(0, a, (b, t))],
             "reward": np.zeros((b, t), np.float32), "is_first": np.zeros((b, t), bool),
             "is_terminal": np.zeros((b, t), bool)}
    from twister_jax import sharding
    batch = sharding.global_batch(batch, agent.mesh)
    n = int(config.env.num_envs)
    act = agent.init_act_state(n)
    image, first = np.zeros((n, 64, 64, 3), np.uint8), np.ones(n, bool)
    key = jax.random.key(1)
    state, m = agent.train_step(state, batch, key)
    jax.block_until_ready(m)
    act, action = agent.policy_step(state.params, act, image, first, key)
    jax.block_until_ready(action)
    tr, po = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, m = agent.train_step(state, batch, key)
        jax.block_until_ready((state, m))
        tr.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        act, action = agent.policy_step(state.params, act, image, first, key)
        jax.block_until_ready(action)
        po.append(time.perf_counter() - t0)
    return {"train_ms": 1e3 * statistics.median(tr), "policy_ms": 1e3 * statistics.median(po)}


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="gradient steps K per repeat (default 2000)")
    p.add_argument("--warmup", type=int, default=None, help="steps left out of the window (default K/10)")
    p.add_argument("--repeats", type=int, default=3, help="fresh loops; medians are reported (default 3)")
    p.add_argument("--game", default="alien", help="Atari 100k game (default alien)")
    p.add_argument("--real", action="store_true", help="the real agent instead of the null agent")
    p.add_argument("--size", default=None, help="full (default for null) or tiny (default for --real)")
    p.add_argument("--tty", action="store_true", help="the tqdm progress bar instead of plain lines")
    p.add_argument("--num_seeds", type=int, default=1, help="runs in one process (config.num_seeds; needs --real)")
    p.add_argument("--overlap", action="store_true",
                   help="config.overlap_acting: act with the previous params, envs stepping during the gradient step")
    p.add_argument("--replay_on_device", default="on",
                   help="config.replay_on_device: on (default: batches gathered on the device from its copy of the "
                        "frames, as a GPU/TPU run does by default), off (gathered on the host and copied), auto")
    return p.parse_args(argv)



def run(steps: int, *, warmup=None, repeats: int = 1, game: str = "alien", real: bool = False,
        size=None, tty: bool = False, num_seeds: int = 1, replay_on_device: str = "on",
        overlap: bool = False) -> dict:
    """Measures and returns the result dict (the JSON line's content)."""
    import jax

    size = size or ("tiny" if real else "full")
    warmup = max(1, steps // 10) if warmup is None else warmup
    if num_seeds != 1 and not real:
        raise ValueError("num_seeds > 1 needs the real agent (--real)")
    config = make_config(size, game, steps, num_seeds, replay_on_device, overlap)
    rows, extra = [], {}
    for _ in range(repeats):
        if real:
            from twister_jax import agent as agent_lib
            agent = agent_lib.make_agent(config)
        else:
            names = metric_names(config) if not rows else names
            agent = make_null_agent(config, names)
        with contextlib.ExitStack() as stack:
            if not real:  # the device's gather from the frame store is device work too
                stack.enter_context(_null_frame_gather())
            rows.append(measure(config, agent=agent, warmup=warmup, tty=tty))
    med = {k: statistics.median(r[k] for r in rows) for k in COLUMNS}
    if real and num_seeds == 1:
        extra = device_busy(config, agent)
        extra["device_busy"] = min(1.0, (extra["train_ms"] + extra["policy_ms"]) / med["total"])
    dev = jax.devices()[0]
    return {"benchmark": "loop", "mode": "real" if real else "null", "size": size, "game": game,
            "batch": [int(config.batch_size), int(config.seq_len)], "steps": steps, "warmup": warmup,
            "repeats": repeats, "num_seeds": num_seeds, "replay_on_device": replay_on_device,
            "overlap_acting": overlap, "ms_per_step": med, "repeat_totals_ms": [r["total"] for r in rows],
            "device": f"{dev.platform}:{dev.device_kind} x{jax.device_count()}", "jax": jax.__version__,
            "load": round(os.getloadavg()[0], 2), **extra}


def print_table(res: dict) -> None:
    print(f"loop benchmark: {res['mode']} agent, {res['game']} ({res['size']} config, B x T = "
          f"{res['batch'][0]} x {res['batch'][1]}, replay_on_device={res['replay_on_device']}, "
          f"overlap_acting={res['overlap_acting']}), "
          f"{res['steps'] - res['warmup']} measured gradient steps x "
          f"{res['repeats']} repeats (medians); device {res['device']}, jax {res['jax']}, load {res['load']}")
    print("| " + " | ".join(f"{c} ms" for c in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    print("| " + " | ".join(f"{res['ms_per_step'][c]:.3f}" for c in COLUMNS) + " |")
    if "device_busy" in res:
        print(f"iteration {res['ms_per_step']['total']:.1f} ms; train step alone {res['train_ms']:.1f} ms, "
              f"policy step alone {res['policy_ms']:.2f} ms; device busy ~{100 * res['device_busy']:.0f}%")


def main(argv=None):
    args = _parse(argv)
    if args.steps < 2:
        _fail(f"--steps {args.steps}: must be at least 2")
    if args.repeats < 1:
        _fail(f"--repeats {args.repeats}: must be at least 1")
    if args.warmup is not None and not 0 <= args.warmup < args.steps:
        _fail(f"--warmup {args.warmup}: must be in [0, --steps)")
    if args.size not in (None, "full", "tiny"):
        _fail(f"--size {args.size!r}: allowed full, tiny")
    if args.num_seeds < 1 or (args.num_seeds > 1 and not args.real):
        _fail(f"--num_seeds {args.num_seeds}: must be 1, or more with --real")
    if args.replay_on_device not in ("on", "off", "auto"):
        _fail(f"--replay_on_device {args.replay_on_device!r}: allowed on, off, auto")
    from twister_jax.suites import ATARI_GAMES, normalize_game
    try:
        normalize_game(args.game)
    except (ValueError, KeyError):
        _fail(f"--game {args.game!r}: allowed {', '.join(ATARI_GAMES)}")
    res = run(args.steps, warmup=args.warmup, repeats=args.repeats, game=args.game, real=args.real,
              size=args.size, tty=args.tty, num_seeds=args.num_seeds, replay_on_device=args.replay_on_device,
              overlap=args.overlap)
    print_table(res)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
