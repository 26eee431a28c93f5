"""The runs of a group (`config.num_seeds` = R > 1, docs/architecture.md §9): names, configs, parts.

A group trains the seeds `seed, seed+1, ..., seed+R-1` in one process. Run i is a solo run with seed
`seed+i`: its own config (`run_config`: that seed, `num_seeds` 1), base key `jax.random.key(seed+i)`,
envs, replay buffer, host RNGs, `Collector`, `Evaluator`, `MetricLog` and `Outputs`, and its own
run directory `<workdir>/seed_<seed+i>/` (config.json, metrics.jsonl, scores.jsonl, tb/, done.json).
What the runs share lives once in `<workdir>`: checkpoints/, replay/seed_<seed+i>/, config.json of the
group and done.json when every run finished. A solo run (R = 1) is the group of one run whose
directory is `<workdir>` itself, so its layout is unchanged. No jax import here.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any


def num_runs(config) -> int:
    return int(config.get("num_seeds", 1))


def seeds(config) -> list[int]:
    """The seeds of the runs of `config`: seed .. seed + num_seeds - 1."""
    return [int(config.seed) + i for i in range(num_runs(config))]


def run_name(seed: int) -> str:
    """The sub-directory (and checkpoint entry) of the run with `seed` in a group."""
    return f"seed_{int(seed)}"


def run_config(config, i: int):
    """The config of run `i` of a group: seed `seed + i`, num_seeds 1 (a solo run's config);
    `config` itself for a solo run."""
    if num_runs(config) == 1:
        return config
    c = config.copy_and_resolve_references()
    with c.unlocked():
        c.seed = int(config.seed) + int(i)
        c.num_seeds = 1
    c.lock()
    return c


def run_dir(workdir, config, i: int) -> pathlib.Path:
    """Run `i`'s directory: `workdir` for a solo run, `workdir/seed_<seed+i>` in a group."""
    workdir = pathlib.Path(workdir)
    return workdir if num_runs(config) == 1 else workdir / run_name(int(config.seed) + int(i))


@dataclasses.dataclass
class Run:
    """One run's parts (see `twister_jax.loop.Trainer`)."""
    index: int
    seed: int
    config: Any            # the run's own config (`run_config`)
    workdir: pathlib.Path  # the run's directory (`run_dir`)
    base_key: Any          # jax.random.key(seed)
    replay: Any
    collector: Any
    evaluator: Any
    metrics: Any
    out: Any = None
    last_batch: Any = None

    @property
    def parts(self) -> dict:
        """The parts saved with `get_state()` in the checkpoint's host item."""
        return {"collector": self.collector, "evaluator": self.evaluator, "metrics": self.metrics}
