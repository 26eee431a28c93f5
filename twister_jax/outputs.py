"""What a run writes as it goes: metrics.jsonl, scores.jsonl, TensorBoard (docs/interfaces.md §6).

`Outputs` holds the writers (chief process only). `MetricLog` is the part that accumulates the train
step's metrics between two log rows and builds each row; its accumulators are saved in checkpoints
(`get_state`/`set_state`), so a resumed run writes the same rows as one never interrupted.

Rows (choices not in the original): a metrics.jsonl row holds the mean of every train-step metric
over the gradient steps since the previous row; the training envs' episode statistics are the mean
over the episodes finished since the previous row (`episode_reward_total`, `episode_steps` in
frames) plus the running count `episodes`; rates (`sps`, `env_sps`) and `wall_time` are wall-clock.
"""
from __future__ import annotations

import logging
import pathlib
import time

import numpy as np

log = logging.getLogger(__name__)


class Outputs:
    """metrics.jsonl, scores.jsonl and TensorBoard via `twister_jax.writers` (chief process only).

    On resume every writer drops what was logged after `resume_step` (JSONL rows with a larger
    `step`; TensorBoard events through purge_step). Figures from `agent.figures`: an entry whose
    name contains "video" is a video ((T, H, W, C) or (N, T, H, W, C) uint8), any other an image
    ((H, W, C), or (N, H, W, C) shown as a grid).
    """

    def __init__(self, workdir: pathlib.Path, resume_step: int, *, enabled: bool = True):
        self.enabled = enabled
        self.tb = self.metrics_w = self.scores_w = None
        if not enabled:
            return
        from twister_jax import writers
        self.metrics_w = writers.JsonlWriter(workdir / "metrics.jsonl", resume_step=resume_step)
        self.scores_w = writers.JsonlWriter(workdir / "scores.jsonl", resume_step=resume_step)
        try:
            self.tb = writers.TensorBoardWriter(workdir / "tb", resume_step=resume_step)
        except Exception as exc:  # noqa: BLE001 - TensorBoard is optional
            log.warning("TensorBoard writer unavailable: %s", exc)

    def _write(self, jsonl, row: dict, tb_scalars: dict) -> None:
        """One row to a JSONL writer (every field but `step`) and the chosen scalars to TensorBoard."""
        if jsonl is None:  # not the chief process
            return
        jsonl.write_scalars(row["step"], {k: v for k, v in row.items() if k != "step"})
        if self.tb is not None:
            self.tb.write_scalars(row["step"], tb_scalars)

    def metrics(self, row: dict) -> None:
        self._write(self.metrics_w, row,
                    {f"train/{k}": v for k, v in row.items() if k != "step"})

    def scores(self, row: dict) -> None:
        self._write(self.scores_w, row,
                    {f"eval/{k}": row[k] for k in ("return_mean", "return_std", "length_mean")})
        if self.tb is not None:
            self.tb.flush()

    def figures(self, step: int, figures: dict) -> None:
        if not self.enabled or self.tb is None:
            return
        videos = {f"figures/{k}": v for k, v in figures.items() if "video" in k}
        images = {f"figures/{k}": v for k, v in figures.items() if "video" not in k}
        if images:
            self.tb.write_images(step, images)
        if videos:
            self.tb.write_videos(step, videos)
        self.tb.flush()

    def close(self) -> None:
        for w in (self.metrics_w, self.scores_w, self.tb):
            if w is not None:
                w.close()


class MetricLog:
    """Train-step metrics since the last row, and the row builder.

    `add(metrics)` takes one step's metrics: the train step's `metrics.Metrics` (already packed on the
    device into one float32 vector (K,)) is kept as it is; a dict whose values are all float32 scalar
    `jax.Array`s is packed the same way by one small jitted call, so a row fetches one array per
    step instead of one per metric and step; other values (NumPy, restored state) are kept as given.
    Nothing is fetched before a row is built or the state saved. `row(...)` averages them (each
    metric's float32 values, in float64, in step order: the same numbers either way), adds the
    episode statistics and rates, and clears.
    """

    def __init__(self):
        self.pending: list = []  # per step: (keys, packed float32 (K,) jax.Array) or (None, metrics dict)
        self.t_start = time.time()
        self._last = (time.time(), None, None)  # (time, step, env_steps) of the previous row
        self._packing = True  # False once packing failed (values on different devices): keep dicts

    def add(self, metrics) -> None:
        import jax

        from twister_jax.metrics import Metrics
        if isinstance(metrics, Metrics) and getattr(metrics.packed, "ndim", None) == 1:
            self.pending.append((metrics.names, metrics.packed))
            return
        values = tuple(metrics.values())
        if (self._packing and values
                and all(isinstance(v, jax.Array) and v.shape == () and v.dtype == np.float32 for v in values)):
            try:
                self.pending.append((tuple(metrics), _pack(*values)))
                return
            except Exception as exc:  # noqa: BLE001 - e.g. scalars committed to different devices
                log.warning("metrics kept unpacked (%s: %s)", type(exc).__name__, str(exc).splitlines()[0][:200])
                self._packing = False
        self.pending.append((None, metrics))

    def _columns(self) -> tuple:
        """(keys, {key: values (steps,) in their own dtype}) of the pending steps, in one fetch."""
        import jax
        if not self.pending:
            return [], {}
        fetched = jax.device_get([payload for _, payload in self.pending])
        keys0 = self.pending[0][0]
        if keys0 is not None and all(keys == keys0 for keys, _ in self.pending):
            stacked = np.stack(fetched)  # (steps, K) float32
            return list(keys0), {k: np.ascontiguousarray(stacked[:, j]) for j, k in enumerate(keys0)}
        dicts = [dict(zip(keys, payload)) if keys is not None else payload
                 for (keys, _), payload in zip(self.pending, fetched)]
        keys = list(dicts[0])
        return keys, {k: np.stack([np.asarray(d[k]) for d in dicts]) for k in keys}

    def row(self, step: int, env_steps: int, frames: int, episodes: int, finished: list,
            replay_windows: int) -> dict:
        now = time.time()
        last_t, last_step, last_env = self._last
        last_step = step if last_step is None else last_step
        last_env = env_steps if last_env is None else last_env
        row = {"step": step, "env_steps": env_steps, "frames": frames}
        keys, columns = self._columns()
        for k in keys:
            row[k] = float(np.mean(columns[k].astype(np.float64)))
        row["episodes"] = episodes
        if finished:
            row["episode_reward_total"] = float(np.mean([e[0] for e in finished]))
            row["episode_steps"] = float(np.mean([e[1] for e in finished]))
        row["replay_windows"] = int(replay_windows)
        dt = max(now - last_t, 1e-9)
        row["sps"] = (step - last_step) / dt
        row["env_sps"] = (env_steps - last_env) / dt
        row["wall_time"] = now - self.t_start
        self.pending = []
        return row

    def mark(self, step: int, env_steps: int) -> None:
        """Starts the rate clock at (`step`, `env_steps`) now (start-up, after a row)."""
        self._last = (time.time(), step, env_steps)

    def get_state(self) -> dict:
        """The pending metrics, one array per key (stacked over steps, in the metrics' dtype)."""
        keys, columns = self._columns()
        return {"keys": keys, "values": columns}

    def set_state(self, state: dict) -> None:
        keys, values = state["keys"], state["values"]
        steps = len(values[keys[0]]) if keys else 0
        self.pending = [(None, {k: values[k][i] for k in keys}) for i in range(steps)]


_PACK = None


def _pack(*values):
    """float32 scalars (device arrays) -> one float32 (K,) device array: one jitted call."""
    global _PACK  # noqa: PLW0603 - built on first use (no jax import at module load)
    if _PACK is None:
        import jax
        import jax.numpy as jnp
        _PACK = jax.jit(lambda *xs: jnp.stack(xs))
    return _PACK(*values)
