"""Device check: run this first on a GPU/TPU host. One command, at most ~8 minutes, one table and a
final JSON line with what to know before a suite of runs.

    python experiments/device_check.py            # full on a GPU/TPU; reduced on a CPU
    python experiments/device_check.py --reduced  # the reduced version anywhere (about a minute)

Sections (each reuses a benchmark of `experiments/`, nothing is measured twice in two ways):
1. device, device count, jax and jaxlib versions;
2. train step at Atari size (configs/atari.py:alien, B = 16, T = 64, H = 15) in float32 and bfloat16:
   compile time, time per step and the world-model / imagination / actor-critic split, by
   `experiments/benchmark_train_step.py` in a subprocess (a fresh compiler, no persistent cache);
3. policy step latency: one acting step of the training env (N = 1), compiled, median of 100 calls;
4. the training loop on Alien (`experiments/benchmark_loop.py`): the host floor (null agent, full
   config) and, in the full version, the real agent at full size over 1,000 gradient steps: time
   per iteration and device-busy fraction;
5. peak device memory (`peak_bytes_in_use`; on CPU the process's max RSS);
6. the projected wall time of one Atari 100k run: 100,000 x the loop's time per iteration (real
   agent, full config) + the compile time. Not in it: the 11 evaluations (10,000-step interval and
   the last step, 100 greedy episodes each) and the 50 checkpoints; the reduced version projects the
   host floor alone (100,000 x the null agent's time per iteration), a lower bound of any run here;
7. seeds per process (`config.num_seeds`): rows for N = 1 and 5 seeds in one process, time per
   iteration and per seed: the real-agent loop at full config (N = 1 is the loop row of section 4);
   reduced: the tiny train step of N stacked runs. Without the key (an older version) the line
   says so.

Reduced version (chosen automatically when the default backend is the CPU, or with --reduced): the
tiny widths (configs/tiny.py) for the train and policy steps (float32 only, no split, in this
process: a persistent compile cache applies when one is configured), 300 null-agent loop steps on
Alien at the full config, no real-agent loop (minutes per row on a CPU), seed rows of the tiny train
step. It exists so that the default tests run this script (tests/test_device_check.py).
A section that fails prints its error in its row and the check goes on; a section that would pass
the time budget (--budget_s, default 480 s) is skipped with that reason.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))
EXPERIMENTS = ROOT / "experiments"
if str(EXPERIMENTS) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS))

ATARI_100K_STEPS = 100_000


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reduced", action="store_true", help="the reduced version (automatic on a CPU)")
    p.add_argument("--budget_s", type=float, default=480.0, help="time budget in seconds (default 480)")
    p.add_argument("--loop_steps", type=int, default=None,
                   help="gradient steps of the loop rows (default 1000; reduced: 300)")
    return p.parse_args(argv)


def _peak_mib() -> tuple[float, str]:
    import jax
    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2 ** 20, "device peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "max RSS of this process (CPU)"


def train_step_rows(reduced: bool, time_left, reserve_s: float = 200.0) -> tuple[list, list]:
    """Rows of experiments/benchmark_train_step.py, and notes on rows left out.

    Full: its command line, one subprocess per dtype (bfloat16 first: the dtype of the speed target;
    each row in its own compiler, no compile cache), float32 only if the time the bfloat16 row took
    is still left after `reserve_s` for the later sections. Reduced: its `run_row` in this process (a persistent compile
    cache, if one is configured, applies). `time_left()` -> seconds left of the budget.
    """
    if reduced:
        import benchmark_train_step
        return [benchmark_train_step.run_row("tiny", "float32", 2, False, "highest")], []
    rows, notes, took = [], [], 0.0
    for dtype in ("bfloat16", "float32"):
        if rows and time_left() - reserve_s < took:
            notes.append(f"{dtype} row skipped: the bfloat16 row took {took:.0f} s, "
                         f"{max(time_left() - reserve_s, 0):.0f} s left for it")
            break
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="device_check_") as tmp:
            out = pathlib.Path(tmp) / "rows.json"
            cmd = [sys.executable, str(EXPERIMENTS / "benchmark_train_step.py"), "--sizes", "atari",
                   "--dtypes", dtype, "--steps", "20", "--json", str(out)]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=max(time_left() - reserve_s, 60), env=env)
            if res.returncode or not out.exists():
                raise RuntimeError(f"benchmark_train_step {dtype} failed (exit {res.returncode}): "
                                   f"{res.stderr.strip()[-500:]}")
            rows += json.loads(out.read_text())
        took = time.time() - t0
    return rows, notes


def policy_latency(reduced: bool, calls: int = 100) -> dict:
    """Compile time and median latency (ms) of one acting step of N = 1 env at the run config."""
    import jax
    import numpy as np

    from twister_jax import agent as agent_lib
    from twister_jax.config_files import load_config

    config = (load_config(ROOT / "configs" / "tiny.py", "atari") if reduced
              else load_config(ROOT / "configs" / "atari.py", "alien"))
    agent = agent_lib.make_agent(config)
    state = agent.init_state(jax.random.key(0))
    n = int(config.env.num_envs)
    act = agent.init_act_state(n)
    image, first = np.zeros((n, 64, 64, 3), np.uint8), np.ones(n, bool)
    t0 = time.perf_counter()
    act, action = agent.policy_step(state.params, act, image, first, jax.random.key(1))
    np.asarray(action)
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        act, action = agent.policy_step(state.params, act, image, first, jax.random.key(i))
        np.asarray(action)  # the loop fetches the action to step the env
        times.append(time.perf_counter() - t0)
        first = np.zeros(n, bool)
    return {"policy_ms": 1e3 * statistics.median(times), "policy_compile_s": compile_s}


def num_seeds_available() -> bool:
    from twister_jax.config_files import load_config
    return "num_seeds" in load_config(ROOT / "configs" / "atari.py", "alien")


class Check:
    """Runs the sections within the budget; collects rows (name, value, note) and the JSON fields."""

    def __init__(self, budget_s: float):
        self.t0, self.budget_s = time.time(), budget_s
        self.rows: list = []
        self.fields: dict = {}

    def left(self) -> float:
        return self.budget_s - (time.time() - self.t0)

    def section(self, name: str, need_s: float, fn) -> None:
        if self.left() < need_s:
            self.rows.append((name, "skipped", f"needs ~{need_s:.0f} s, {max(self.left(), 0):.0f} s of the budget left"))
            self.fields.setdefault("skipped", []).append(name)
            return
        t0 = time.time()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failed section must not hide the others
            self.rows.append((name, "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"))
            self.fields.setdefault("failed", {})[name] = f"{type(exc).__name__}: {exc}"[:500]
        self.fields.setdefault("section_s", {})[name] = round(time.time() - t0, 1)

    def add(self, name: str, value: str, note: str = "") -> None:
        self.rows.append((name, value, note))


def main(argv=None):
    args = _parse(argv)
    if args.budget_s <= 0:
        print(f"error: --budget_s {args.budget_s}: must be positive", file=sys.stderr)
        sys.exit(2)
    if args.loop_steps is not None and args.loop_steps < 20:
        print(f"error: --loop_steps {args.loop_steps}: must be at least 20", file=sys.stderr)
        sys.exit(2)
    import jax
    import jaxlib

    from twister_jax import runtime  # noqa: F401  (the package imports before any section)
    import benchmark_loop

    backend = jax.default_backend()
    reduced = args.reduced or backend == "cpu"
    cache_tmp = None
    if backend != "cpu" and not jax.config.jax_compilation_cache_dir:
        # in this process the same policy step is compiled by two sections: the second loads it
        # (the train-step rows run in subprocesses without a cache and time real compiles)
        cache_tmp = tempfile.TemporaryDirectory(prefix="device_check_cache_")
        jax.config.update("jax_compilation_cache_dir", cache_tmp.name)
    loop_steps = args.loop_steps or (300 if reduced else 1000)
    chk = Check(args.budget_s)
    dev = jax.devices()[0]
    chk.fields.update(mode="reduced" if reduced else "full", backend=backend, device=dev.device_kind,
                      device_count=jax.device_count(), jax=jax.__version__, jaxlib=jaxlib.__version__)
    chk.add("device", f"{backend}: {dev.device_kind} x{jax.device_count()}",
            "reduced version (CPU or --reduced): tiny widths, no real-agent loop" if reduced else "full version")
    chk.add("jax / jaxlib", f"{jax.__version__} / {jaxlib.__version__}")

    def train():
        rows, notes = train_step_rows(reduced, chk.left)
        chk.fields["train_step"] = [{k: r.get(k) for k in ("size", "dtype", "compile_s", "step_ms", "wm_ms",
                                                           "imag_ms", "ac_ms", "peak_MiB")} for r in rows]
        for r in rows:
            split = (f"world model {r['wm_ms']:.1f} / imagination {r['imag_ms']:.1f} / actor-critic {r['ac_ms']:.1f} ms"
                     if "wm_ms" in r else "split not measured in the reduced version")
            chk.add(f"compile ({r['size']}, {r['dtype']})", f"{r['compile_s']:.1f} s",
                    "whole train step" + (", compile cache as configured" if reduced else ", no cache"))
            chk.add(f"train step ({r['size']}, {r['dtype']})", f"{r['step_ms']:.1f} ms", split)
        for note in notes:
            chk.add("train step", "skipped", note)
            chk.fields.setdefault("skipped", []).append(note)
        chk.fields["compile_s"] = rows[0]["compile_s"]
        chk.fields["train_peak_MiB"] = max(r["peak_MiB"] for r in rows)
    chk.section("train step", 40 if reduced else 240, train)

    def policy():
        p = policy_latency(reduced)
        chk.fields.update(p)
        chk.add("policy step latency", f"{p['policy_ms']:.2f} ms",
                f"N = 1 env, {'tiny' if reduced else 'Atari'} size, with the action fetch; compile {p['policy_compile_s']:.1f} s")
    chk.section("policy step", 15 if reduced else 60, policy)

    def host_floor():
        res = benchmark_loop.run(loop_steps, repeats=1)
        ms = res["ms_per_step"]
        chk.fields["host_floor_ms"] = ms["total"]
        chk.fields["host_floor_split_ms"] = ms
        chk.add("loop host floor (null agent)", f"{ms['total']:.2f} ms/step",
                f"Alien, full config, {res['steps'] - res['warmup']} steps: env {ms['env']:.2f}, sample "
                f"{ms['sample']:.2f}, h2d {ms['h2d']:.2f}, log {ms['log']:.2f}, rest {ms['rest']:.2f} ms")
    chk.section("loop host floor", 20, host_floor)

    def real_loop():
        res = benchmark_loop.run(loop_steps, repeats=1, real=True, size="full")
        ms = res["ms_per_step"]["total"]
        chk.fields.update(loop_ms=ms, device_busy=res.get("device_busy"))
        chk.add("loop time per iteration (real agent)", f"{ms:.2f} ms",
                f"Alien, full config, {res['steps'] - res['warmup']} steps; device busy ~{100 * res['device_busy']:.0f}%")
    if not reduced:
        chk.section("loop (real agent)", 120, real_loop)

    peak, kind = _peak_mib()
    peak = max(peak, chk.fields.get("train_peak_MiB") or 0.0)
    chk.fields["peak_MiB"] = peak
    chk.add("peak memory", f"{peak:.0f} MiB", kind + "; train-step rows: their subprocess peaks")

    if "loop_ms" in chk.fields:
        proj = (ATARI_100K_STEPS * chk.fields["loop_ms"] / 1e3 + chk.fields.get("compile_s", 0.0)) / 60
        chk.fields["projected_100k_min"] = proj
        chk.add("projected Atari 100k run", f"{proj:.1f} min",
                "100,000 x loop iteration + compile; without the 11 evaluations and 50 checkpoints")
    elif "host_floor_ms" in chk.fields:
        proj = ATARI_100K_STEPS * chk.fields["host_floor_ms"] / 1e3 / 60
        chk.fields["projected_100k_host_floor_min"] = proj
        chk.add("projected Atari 100k host floor", f"{proj:.1f} min",
                "100,000 x the null agent's iteration: host work alone (the reduced version has no real-agent loop)")

    def seeds():
        for n in (1, 5):
            if reduced:  # the tiny train step of n stacked runs (one vmapped step)
                if n == 1 and chk.fields.get("train_step"):
                    ms = chk.fields["train_step"][0]["step_ms"]
                else:
                    import benchmark_train_step
                    ms = benchmark_train_step.run_row("tiny", "float32", 2, False, "highest", n)["step_ms"]
                what = "tiny train step"
            elif n == 1 and "loop_ms" in chk.fields:  # the real-agent loop row above is the one-seed row
                ms, what = chk.fields["loop_ms"], "loop iteration"
            else:
                ms = benchmark_loop.run(max(loop_steps // 4, 50), repeats=1, real=True, size="full",
                                        num_seeds=n)["ms_per_step"]["total"]
                what = "loop iteration"
            chk.fields.setdefault("seeds", []).append({"num_seeds": n, "what": what, "ms": ms, "ms_per_seed": ms / n})
            chk.add(f"seeds per process: {n}", f"{ms:.2f} ms per {what}", f"{ms / n:.2f} ms per seed")
    if not num_seeds_available():
        chk.fields["seeds"] = None
        chk.add("seeds per process", "not in this version", "rows for N = 1, 5 appear once config.num_seeds exists")
    else:
        chk.section("seeds per process", 30 if reduced else 150, seeds)

    chk.fields["elapsed_s"] = time.time() - chk.t0
    print(f"device check ({chk.fields['mode']}), {chk.fields['elapsed_s']:.0f} s, load {os.getloadavg()[0]:.1f}")
    print("| check | value | note |")
    print("|---|---|---|")
    for name, value, note in chk.rows:
        print(f"| {name} | {value} | {note} |")
    print(json.dumps({"device_check": chk.fields}), flush=True)
    if cache_tmp is not None:
        cache_tmp.cleanup()


if __name__ == "__main__":
    main()
