"""Forward and forward+backward time of the encoder convs and decoder transposed convs, per impl.

Full size by default: N = 16 x 64 = 1024 frames of 64x64, docs/original.md §3.3 (Conv 4x4/2: 3->32->64->128->256)
and 3.5 (ConvT 4x4/2: 256->128->64->32->3, 4x4 -> 64x64). Each row is one jitted function timed after a
warm-up call: ``fwd`` = the op alone, ``fwd+bwd`` = gradients of ``sum(silu(op(x, k)) * c)`` w.r.t. x and k
(c a fixed random array; the SiLU makes the backward pass need the forward output, as LayerNorm + SiLU do in
the model). ``encoder`` / ``decoder`` rows chain the four layers with SiLU after each (no LayerNorm) and
differentiate w.r.t. the input and all four kernels. Times are the minimum over
``--reps`` calls (the median is printed too: other processes share the CPU); the impls of one row are
timed round-robin, so their ratio is meaningful even when the load changes during the run.

    python experiments/benchmark_conv.py                       # full size, float32, all impls
    python experiments/benchmark_conv.py --batch 64 --reps 5   # quick look
    python experiments/benchmark_conv.py --dtype bfloat16 --only decoder
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from twister_jax.networks.conv import conv2d, conv_transpose2d

ENC = [(64, 3, 32), (32, 32, 64), (16, 64, 128), (8, 128, 256)]   # (input size, Cin, Cout)
DEC = [(4, 256, 128), (8, 128, 64), (16, 64, 32), (32, 32, 3)]


def _time_interleaved(fns, *args, reps):
    """Milliseconds per call of every function, timed round-robin so that all see the same machine load."""
    for fn in fns.values():
        jax.block_until_ready(fn(*args))  # compile + warm-up
    times = {key: [] for key in fns}
    for _ in range(reps):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[key].append((time.perf_counter() - t0) * 1e3)
    return times


def _layer_fns(op, impl, c):
    fwd = jax.jit(lambda x, k: op(x, k, impl=impl))
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(jax.nn.silu(op(x, k, impl=impl).astype(jnp.float32)) * c), (0, 1)))
    return fwd, grad


def _stack_fns(op, impl, c):
    def run(x, ks):
        for i, k in enumerate(ks):
            x = op(x, k, impl=impl)
            if i < len(ks) - 1:
                x = jax.nn.silu(x)
        return x
    fwd = jax.jit(run)
    grad = jax.jit(jax.grad(lambda x, ks: jnp.sum(jax.nn.silu(run(x, ks).astype(jnp.float32)) * c), (0, 1)))
    return fwd, grad


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--impls", default="xla,matmul,hybrid")
    parser.add_argument("--only", default="layers,encoder,decoder",
                        help="comma list of: layers, encoder, decoder")
    args = parser.parse_args()
    dt = jnp.dtype(args.dtype)
    impls = args.impls.split(",")
    only = args.only.split(",")
    rng = np.random.default_rng(0)
    n = args.batch

    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"load average before {os.getloadavg()[0]:.2f}; N={n}, dtype={args.dtype}, min (median) of {args.reps}")
    print(f"{'what':<34}{'impl':<8}{'fwd ms':>18}{'fwd+bwd ms':>20}")

    cases = []
    if "layers" in only:
        for s, ci, co in ENC:
            cases.append((f"conv  {s}x{s}x{ci} -> {s // 2}x{s // 2}x{co}", conv2d, (n, s, s, ci), (4, 4, ci, co),
                          (n, s // 2, s // 2, co), False))
        for s, ci, co in DEC:
            cases.append((f"convT {s}x{s}x{ci} -> {2 * s}x{2 * s}x{co}", conv_transpose2d, (n, s, s, ci),
                          (4, 4, ci, co), (n, 2 * s, 2 * s, co), False))
    if "encoder" in only:
        cases.append(("encoder (4 convs + SiLU)", conv2d, (n, 64, 64, 3), [(4, 4, ci, co) for _, ci, co in ENC],
                      (n, 4, 4, 256), True))
    if "decoder" in only:
        cases.append(("decoder (4 convT + SiLU)", conv_transpose2d, (n, 4, 4, 256),
                      [(4, 4, ci, co) for _, ci, co in DEC], (n, 64, 64, 3), True))

    totals = {}
    for name, op, xs, ks, ys, stack in cases:
        x = jnp.asarray(rng.normal(size=xs), dt)
        if stack:
            k = [jnp.asarray(rng.normal(size=s) * 0.05, jnp.float32) for s in ks]
        else:
            k = jnp.asarray(rng.normal(size=ks) * 0.05, jnp.float32)
        c = jnp.asarray(rng.normal(size=ys), jnp.float32)
        fns = {}
        for impl in impls:
            fwd, grad = (_stack_fns if stack else _layer_fns)(op, impl, c)
            fns[(impl, "fwd")], fns[(impl, "grad")] = fwd, grad
        times = _time_interleaved(fns, x, k, reps=args.reps)
        for impl in impls:
            f, g = times[(impl, "fwd")], times[(impl, "grad")]
            print(f"{name:<34}{impl:<8}{min(f):>9.1f} ({np.median(f):>6.1f}){min(g):>11.1f} ({np.median(g):>6.1f})",
                  flush=True)
            if stack:
                totals[(name, impl)] = min(g)
    for name, impl in totals:
        if impl != "xla" and (name, "xla") in totals:
            print(f"{name}: fwd+bwd xla / {impl} = {totals[(name, 'xla')] / totals[(name, impl)]:.2f}x")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
