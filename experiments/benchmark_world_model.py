"""Benchmark: the world-model step (loss forward + backward + clipped Adam) at the full Atari size.

docs/original.md §12.2 shapes: batch 16 x 64 frames of 64x64x3, hidden 512, CNN width 32, latent 32x32, 4
transformer blocks, 10 AC-CPC head pairs, dropout on (train mode), random resized crops drawn on the
device. For each (compute dtype, conv impl) it prints compile seconds, median milliseconds per step and
CPU seconds per step (user + system, all threads: on a shared machine, CPU s / cores is what an unloaded
machine would need at perfect parallelism), peak memory (CPU: process max RSS from `resource.getrusage`, which only grows, so the rows after the
first are upper bounds; GPU/TPU: the device's ``peak_bytes_in_use``), with the device kind and the JAX
version.

Anchor (issue 4): the original's world-model step (forward, backward, Adam, float32) takes 3.9 s on a
2-core CPU machine (torch 2.13, 2 threads); target at most ~1.5x that.

Usage:
  python experiments/benchmark_world_model.py                                   # f32+bf16, impl auto
  python experiments/benchmark_world_model.py --dtypes float32 --impls matmul --steps 3
  python experiments/benchmark_world_model.py --config tiny --batch 4 --seq 16    # smoke test
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="atari", help="atari (configs/atari.py:alien) or tiny (configs/tiny.py:atari)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--impls", default=None, help="comma list of auto,xla,matmul,hybrid (default: auto; auto = "
                   "the per-layer CPU choice of encoder.layer_impl / decoder.layer_impl, xla off CPU)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per row (after one warm-up step)")
    p.add_argument("--no-adam", action="store_true", help="time loss forward+backward only")
    p.add_argument("--precision", default="highest", help="jax_default_matmul_precision")
    return p.parse_args()


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads): on a shared CPU, CPU s / cores bounds
    the wall time an unloaded machine would need."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_memory_mb(device) -> tuple[float, str]:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2 ** 20, "device peak"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "process max RSS"


def main():
    args = _parse()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from twister_jax.config_files import load_config
    from twister_jax.losses import world_model as wml
    from twister_jax.networks.world_model import WorldModel

    jax.config.update("jax_default_matmul_precision", args.precision)
    jax.config.update("jax_threefry_partitionable", True)
    name, arg = ("atari", "alien") if args.config == "atari" else ("tiny", "atari")
    config = load_config(ROOT / "configs" / f"{name}.py", arg)
    config = config.unlock() if hasattr(config, "unlock") else config
    backend = jax.default_backend()
    device = jax.devices()[0]
    impls = args.impls.split(",") if args.impls else ["auto"]
    m, a = config.model, config.env.num_actions
    b, t = args.batch, args.seq
    rng = np.random.default_rng(0)
    is_first = np.zeros((b, t), bool)
    is_first[:, 0] = True
    is_first[1, t // 2] = True
    action = np.eye(a, dtype=np.float32)[rng.integers(0, a, (b, t))]
    action[is_first] = 0.0
    batch = {"image": rng.integers(0, 256, (b, t, 64, 64, 3), dtype=np.uint8), "action": action,
             "reward": rng.normal(size=(b, t)).astype(np.float32), "is_first": is_first,
             "is_terminal": np.zeros((b, t), bool)}
    batch = jax.device_put(batch)
    cfg = wml.LossConfig.from_config(config)
    oc = config.optim.world_model
    opt = optax.chain(optax.clip_by_global_norm(oc.clip), optax.adam(oc.lr, b1=0.9, b2=0.999, eps=oc.eps))

    print(f"device: {device.device_kind} ({backend}), jax {jax.__version__}, matmul precision {args.precision}, "
          f"batch {b}x{t}, config {args.config}, {'loss fwd+bwd' if args.no_adam else 'loss fwd+bwd+clip+Adam'}")
    rows = []
    for dtype_name in args.dtypes.split(","):
        for impl in impls:
            dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype_name]
            wm = WorldModel.from_config(config, nnx.Rngs(0), conv_impl=impl, dtype=dtype)
            graphdef, params, rest = nnx.split(wm, nnx.Param, ...)
            n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
            opt_state = opt.init(params)

            def step(params, opt_state, batch, key):
                k_noise, k_drop = jax.random.split(key)
                noise = wml.draw_noise(k_noise, b, t, m.stoch, m.discrete, crop_scale=config.augment.crop_scale,
                                       crop_ratio=config.augment.crop_ratio)
                (loss, aux), grads = jax.value_and_grad(wml.loss_fn, has_aux=True)(
                    params, graphdef, rest, batch, noise, cfg, deterministic=False, dropout_key=k_drop)
                if args.no_adam:
                    return params, opt_state, loss, grads
                updates, opt_state = opt.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), opt_state, loss, aux["metrics"]["acc_con"]

            fn = jax.jit(step, donate_argnums=(0, 1))
            key = jax.random.key(0)
            t0, c0 = time.perf_counter(), _cpu_seconds()
            compiled = fn.lower(params, opt_state, batch, key).compile()
            compile_s, compile_cpu = time.perf_counter() - t0, _cpu_seconds() - c0
            params, opt_state, loss, _ = compiled(params, opt_state, batch, jax.random.fold_in(key, 0))
            jax.block_until_ready(loss)
            times, cpu = [], []
            for i in range(args.steps):
                t0, c0 = time.perf_counter(), _cpu_seconds()
                params, opt_state, loss, _ = compiled(params, opt_state, batch, jax.random.fold_in(key, i + 1))
                jax.block_until_ready(loss)
                times.append(time.perf_counter() - t0)
                cpu.append(_cpu_seconds() - c0)
            mem, mem_kind = _peak_memory_mb(device)
            row = (dtype_name, impl, compile_s, 1e3 * statistics.median(times), mem, float(loss),
                   statistics.median(cpu), compile_cpu)
            rows.append(row)
            print(f"  {dtype_name:9s} {impl:7s} compile {compile_s:6.1f} s (CPU {compile_cpu:.1f} s)  median {row[3]:8.0f} ms  "
                  f"(steps {', '.join(f'{x:.2f}' for x in times)} s, CPU {row[6]:.1f} s/step)  {mem_kind} {mem:7.0f} MiB  loss {row[5]:.1f}",
                  flush=True)
            del compiled, fn, params, opt_state
    print(f"\nworld model: {n_params / 1e6:.1f} M parameters; device {device.device_kind}, jax {jax.__version__}")
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| dtype | conv impl | compile s | compile CPU s | median ms/step | CPU s/step | peak memory MiB | loss after steps |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[7]:.1f} | {r[3]:.0f} | {r[6]:.1f} | {r[4]:.0f} | {r[5]:.1f} |")
    if backend == "cpu":
        print("anchor: original (torch 2.13, 2 threads, float32) 3900 ms/step on a 2-core CPU; target <= ~6000 ms")


if __name__ == "__main__":
    main()
