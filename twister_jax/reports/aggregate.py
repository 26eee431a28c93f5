"""Aggregate metrics with stratified bootstrap confidence intervals, computed with `rliable`.

The field's standard (Agarwal et al., 2021, "Deep RL at the edge of the statistical precipice"):
mean, median and interquartile mean (IQM) of a (runs x tasks) score matrix, each with a 95%
percentile interval from a stratified bootstrap over runs (runs are resampled within each task; the
task set is fixed). Scores are human-normalised for Atari 100k and raw returns for DMC.

Choices written down:
* rliable's `aggregate_mean`/`aggregate_median` average each task over runs first;
  `aggregate_iqm` trims 25% at each end of all runs x tasks scores.
* rliable 1.2.0's `StratifiedBootstrap` draws its indices from NumPy's *global* RNG (not from
  `random_state`). To make intervals reproducible from `seed`, `interval_estimates` seeds the global
  RNG for the call and restores its previous state afterwards.
* "Games above human" counts tasks whose mean HNS over runs is strictly greater than 1.
No jax import.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.stats

METRICS: tuple[str, ...] = ("mean", "median", "iqm")
METRIC_LABELS: dict[str, str] = {"mean": "Mean", "median": "Median", "iqm": "IQM"}


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval [lo, hi]."""

    point: float
    lo: float
    hi: float


def _rliable():
    from rliable import library, metrics  # imported lazily: rliable pulls in arch, pandas, scipy
    return library, metrics


def metric_functions() -> dict:
    """metric name -> function of a (runs, tasks) float array returning a scalar (rliable's)."""
    _, metrics = _rliable()
    return {"mean": metrics.aggregate_mean, "median": metrics.aggregate_median,
            "iqm": metrics.aggregate_iqm}


def point_estimates(scores: np.ndarray) -> dict[str, float]:
    """Mean, median and IQM of a (runs, tasks) matrix, without intervals."""
    scores = np.asarray(scores, dtype=np.float64)
    return {k: float(f(scores)) for k, f in metric_functions().items()}


def interval_estimates(scores: np.ndarray, *, reps: int = 50_000, seed: int = 0,
                       confidence: float = 0.95) -> dict[str, Interval]:
    """Mean, median and IQM with stratified bootstrap percentile intervals (rliable).

    Args:
      scores: float (R, T): final score of run r on task t (HNS for Atari, raw return for DMC).
        Needs the same number of runs R for every task (rliable's layout).
      reps: bootstrap replications (rliable's default is 50,000).
      seed: seeds the bootstrap, so the same inputs give the same intervals.
      confidence: interval coverage.

    Returns:
      metric name ("mean", "median", "iqm") -> Interval.
    """
    library, _ = _rliable()
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty (runs, tasks) matrix, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    fns = metric_functions()
    func = lambda x: np.array([fns[m](x) for m in METRICS])  # noqa: E731
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        points, intervals = library.get_interval_estimates(
            {"run": scores}, func, reps=reps, confidence_interval_size=confidence)
    finally:
        np.random.set_state(saved)
    p, ci = points["run"], intervals["run"]
    return {m: Interval(float(p[i]), float(ci[0, i]), float(ci[1, i])) for i, m in enumerate(METRICS)}


def games_above_human(hns: np.ndarray) -> int:
    """Number of tasks whose mean HNS over runs is above 1 (human level).

    Args:
      hns: float (R, T) human-normalised scores, or (T,) per-task means.
    """
    hns = np.asarray(hns, dtype=np.float64)
    per_task = hns.mean(axis=0) if hns.ndim == 2 else hns
    return int(np.sum(per_task > 1.0))


def iqm_of(values) -> float:
    """Interquartile mean (25% trimmed mean) of a flat array, as rliable computes it."""
    return float(scipy.stats.trim_mean(np.asarray(values, dtype=np.float64), 0.25, axis=None))
