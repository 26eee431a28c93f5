"""Benchmark task lists, reference scores and human-normalised scores (docs/original.md §1.1, §1.2, §11).

No jax import. The facts ship as package data:

* `twister_jax/data/atari100k_scores.csv`: per game the random and human reference scores (docs/original.md §11.3,
  Wang et al. 2016 table as used by the Atari 100k literature) and the published per-game mean scores
  of other agents (SimPLe, DreamerV3, TWM, IRIS, STORM, DeltaIRIS, DIAMOND, REM, Simulus,
  EfficientZero).
  There is deliberately **no TWISTER per-game column**: docs/original.md §11.2 lists those numbers as unconfirmed.
* `twister_jax/data/published_aggregates.csv`: aggregate HNS the agents' own papers report, only the
  ones docs/original.md §11.1 marks as confirmed (TWISTER mean 162%, STORM mean/median, IRIS mean, DIAMOND mean).

No DMC reference scores ship: docs/original.md §11.2 lists every DMC per-task score as unconfirmed, and DMC has no
random/human normalisation (aggregates use raw returns, 0 to 1000).
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.resources
import io

import numpy as np

from twister_jax import suites

# docs/original.md §1.1: the 26 Atari 100k games, snake_case ids (atari-py names).
ATARI_100K_GAMES: tuple[str, ...] = tuple(suites.ATARI_GAMES)
# docs/original.md §1.2: the 20 DMC visual tasks.
DMC_TASKS: tuple[str, ...] = tuple(suites.DMC_TASKS)

# Report suite name -> `config.env.suite` of the runs that belong to it.
SUITES: dict[str, str] = {"atari100k": "atari", "dmc": "dmc"}
SUITE_TASKS: dict[str, tuple[str, ...]] = {"atari100k": ATARI_100K_GAMES, "dmc": DMC_TASKS}


def normalize_suite(name: str) -> str:
    """`atari100k`, `atari`, `Atari100k` -> `atari100k`; `dmc` -> `dmc`.

    Raises:
      ValueError naming the bad value.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key in ("atari100k", "atari"):
        return "atari100k"
    if key == "dmc":
        return "dmc"
    raise ValueError(f"unknown suite {name!r}; allowed: atari100k, dmc")


def suite_of_env(env_suite: str) -> str | None:
    """Maps a run's `config.env.suite` (`atari`, `dmc`, `fake`, ...) to a report suite, or None."""
    for report_suite, env in SUITES.items():
        if env == env_suite:
            return report_suite
    return None


def normalize_task(suite: str, name: str) -> str:
    """Snake_case task id of `name` in `suite` (raises ValueError if it is not one of its tasks)."""
    suite = normalize_suite(suite)
    if suite == "atari100k":
        return suites.normalize_game(name)
    return suites.normalize_dmc_task(name)


def _read_data(filename: str) -> list[dict[str, str]]:
    text = importlib.resources.files("twister_jax").joinpath("data", filename).read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


@dataclasses.dataclass(frozen=True)
class AtariReference:
    """The shipped Atari 100k reference table.

    Attributes:
      random: game id -> random-agent score.
      human: game id -> human score.
      agents: names of the published agents, in the CSV's column order.
      published: agent -> game id -> published per-game mean score.
    """

    random: dict[str, float]
    human: dict[str, float]
    agents: tuple[str, ...]
    published: dict[str, dict[str, float]]


@functools.lru_cache(maxsize=None)
def atari_reference() -> AtariReference:
    """Loads `twister_jax/data/atari100k_scores.csv` (26 games; game names CamelCase in the file)."""
    rows = _read_data("atari100k_scores.csv")
    agents = tuple(k for k in rows[0] if k not in ("game", "random", "human"))
    random, human = {}, {}
    published: dict[str, dict[str, float]] = {a: {} for a in agents}
    for row in rows:
        game = suites.normalize_game(row["game"])
        random[game] = float(row["random"])
        human[game] = float(row["human"])
        for agent in agents:
            if row[agent].strip():
                published[agent][game] = float(row[agent])
    missing = set(ATARI_100K_GAMES) - set(random)
    if missing:
        raise ValueError(f"atari100k_scores.csv lacks games {sorted(missing)}")
    return AtariReference(random, human, agents, published)


@dataclasses.dataclass(frozen=True)
class PublishedAggregate:
    """An aggregate score an agent's own paper reports (fraction, e.g. 1.62 = 162% HNS)."""

    suite: str
    agent: str
    metric: str  # "mean", "median" or "iqm"
    value: float
    source: str


@functools.lru_cache(maxsize=None)
def published_aggregates() -> tuple[PublishedAggregate, ...]:
    """Loads `twister_jax/data/published_aggregates.csv` (confirmed paper-reported aggregates only)."""
    return tuple(
        PublishedAggregate(r["suite"], r["agent"], r["metric"], float(r["value"]), r["source"])
        for r in _read_data("published_aggregates.csv"))


def human_normalized(game: str, score):
    """Human-normalised score (score - random) / (human - random) of an Atari 100k game (docs/original.md §11.3).

    Args:
      game: any spelling `suites.normalize_game` accepts.
      score: float or array of raw episode returns.

    Returns:
      float64 of the same shape as `score` (1.0 = human level, 0.0 = random).
    """
    ref = atari_reference()
    game = suites.normalize_game(game)
    lo, hi = ref.random[game], ref.human[game]
    return (np.asarray(score, dtype=np.float64) - lo) / (hi - lo)
