"""N envs stepped in parallel worker processes (docs/interfaces.md §3; docs/original.md §1.1 item 6, §1.2).

Protocol (what the training loop relies on):

* `VectorEnv(env_config, seeds, num_workers=None)`: env i is `make_env(env_config, seeds[i])`
  (guarded: an exception in `step` ends the episode cleanly, see `base.GuardedEnv`). Workers are
  started with `forkserver` (or `spawn` where forkserver is missing), never `fork`.
  `num_workers=None` = none for a single env, else `min(N, cpu count)`; `0` = all envs in this
  process (tests); `k` = the envs dealt round-robin over k processes (each steps its envs in turn).
  The training loop calls `reset_one(i)` right after every `is_last` (including an error step),
  so it never sees an auto-reset; evaluation does the same with a seed per episode.
* `reset() -> list[TimeStep]` resets every env; `reset_one(i, seed=None) -> TimeStep` resets env i
  (re-seeded when `seed` is given). Both return `is_first` steps and clear env i's pending reset.
* `step_async(actions, mask=None)` then `step_wait() -> list`: the same step, split so that the
  caller works while the workers step (nothing else may be called in between);
* `step(actions, mask=None) -> list[Optional[TimeStep]]`: for every i with `mask[i]` (default all):
  - if env i is *pending reset* (its previous returned step had `is_last`, including an error step,
    and no `reset_one(i)` came since), it is reset instead of stepped: the returned TimeStep is the
    reset observation (`is_first=True`, reward 0) and `actions[i]` is ignored (**auto-reset on the
    next call**);
  - else env i is stepped with `actions[i]`; when the step has `is_last`, env i becomes pending.
  Envs with `mask[i] = False` are untouched and get `None`; a pending reset waits for them.
  So a caller that never calls `reset_one` sees: ..., last step (`is_last`), then on the next call
  the reset step (`is_first`), whose action is discarded. A caller that calls `reset_one(i)` right
  after `is_last` (the training loop) never sees an auto-reset.
* An env exception during a step: the step comes back as `TimeStep(previous image, reward 0,
  is_last=True, is_terminal=False, error=True)`, is logged (worker and here), and the env is
  pending reset as after any `is_last`. A worker process that dies raises `RuntimeError`.
* `get_state() -> list[dict]`: each env's `get_state()` dict plus `"pending_reset": bool`;
  `set_state(list[dict])` restores them (missing `pending_reset` = False).
* `cpu_time()`: CPU seconds of this process and all workers (for benchmarks).
* `close()` ends the workers; also on garbage collection / context-manager exit.
* Workers ignore SIGINT and SIGTERM, so a signal to the whole process group (Ctrl-C, `timeout`, a
  cluster scheduler) lets the parent stop cleanly (finish its step, checkpoint) with its envs alive;
  a worker ends on `close()` or when the parent's end of its pipe closes (the parent exited or was killed).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
import traceback
from typing import Any, Optional, Sequence

import numpy as np

from twister_jax.envs.base import TimeStep, make_env

log = logging.getLogger(__name__)


def _context():
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _config_to_dict(env_config) -> dict:
    if isinstance(env_config, dict):
        return dict(env_config)
    if hasattr(env_config, "to_dict"):
        return env_config.to_dict()
    return dict(vars(env_config))


class _Local:
    """A group of guarded envs and their pending-reset flags; runs in a worker or in-process."""

    def __init__(self, env_config: dict, seeds: Sequence[int]):
        self.envs = [make_env(env_config, int(s)) for s in seeds]
        self.pending = [False] * len(self.envs)

    def reset(self, idx: list, seeds: list) -> list:
        out = []
        for i, s in zip(idx, seeds):
            out.append(self.envs[i].reset(seed=s))
            self.pending[i] = False
        return out

    def step(self, idx: list, actions: list) -> list:
        out = []
        for i, a in zip(idx, actions):
            if self.pending[i]:
                ts = self.envs[i].reset()
            else:
                ts = self.envs[i].step(a)
                if ts.error:
                    log.warning("env %d: step raised; episode ended (is_last), reset on the next call", i)
            self.pending[i] = bool(ts.is_last)
            out.append(ts)
        return out

    def get_state(self, idx: list) -> list:
        return [dict(self.envs[i].get_state(), pending_reset=self.pending[i]) for i in idx]

    def set_state(self, idx: list, states: list) -> None:
        for i, s in zip(idx, states):
            s = dict(s)
            self.pending[i] = bool(s.pop("pending_reset", False))
            self.envs[i].set_state(s)

    def cpu_time(self, idx: list) -> list:
        return [time.process_time()] * len(idx)

    def info(self) -> tuple:
        e = self.envs[0]
        return e.num_actions, e.discrete, e.image_shape

    def close(self) -> None:
        for e in self.envs:
            e.close()


def _worker(conn, env_config: dict, seeds: list) -> None:
    # A signal to the whole process group (Ctrl-C, `timeout`, a scheduler's SIGTERM) must reach only the
    # parent, which stops cleanly and then closes us; we end on `close` or when the parent's end of the
    # pipe closes (EOF), also after a SIGKILL of the parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="[env worker %(process)d] %(levelname)s %(message)s")
    try:
        local = _Local(env_config, seeds)
        conn.send(("ok", local.info()))
    except Exception:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
        conn.close()
        return
    while True:
        try:
            cmd, args = conn.recv()
        except EOFError:
            break
        if cmd == "close":
            local.close()
            conn.send(("ok", None))
            break
        try:
            conn.send(("ok", getattr(local, cmd)(*args)))
        except Exception:  # noqa: BLE001 - reported to the parent
            conn.send(("error", traceback.format_exc()))
    conn.close()


class VectorEnv:
    """N envs, stepped in parallel worker processes (see the module docstring for the protocol).

    Attributes:
      n: number of envs. num_actions, discrete, image_shape: as the single envs'.
    """

    def __init__(self, env_config, seeds: Sequence[int], num_workers: Optional[int] = None):
        self.n = len(seeds)
        if self.n < 1:
            raise ValueError("VectorEnv needs at least one seed")
        cfg = _config_to_dict(env_config)
        if num_workers is None:
            num_workers = 0 if self.n == 1 else (os.cpu_count() or 1)
        workers = min(int(num_workers), self.n)
        self._local = None
        self._in_flight = None  # the handle of a step_async not yet waited for
        self._conns, self._procs = [], []
        # env i lives in worker i % workers at local index i // workers
        self._where = [(i % max(workers, 1), i // max(workers, 1)) for i in range(self.n)]
        if workers == 0:
            self._local = _Local(cfg, seeds)
            info = self._local.info()
        else:
            ctx = _context()
            for w in range(workers):
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_worker, args=(child, cfg, [int(s) for s in seeds[w::workers]]), daemon=True)
                p.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(p)
            infos = [self._recv(w) for w in range(workers)]
            info = infos[0]
        self.num_actions, self.discrete, self.image_shape = info

    # ------------------------------------------------------------------------------ plumbing
    def _recv(self, w: int) -> Any:
        try:
            status, payload = self._conns[w].recv()
        except (EOFError, ConnectionError) as exc:
            raise RuntimeError(f"env worker {w} (pid {self._procs[w].pid}) died") from exc
        if status != "ok":
            raise RuntimeError(f"env worker {w} failed:\n{payload}")
        return payload

    def _call(self, cmd: str, per_env: dict) -> dict:
        """per_env: env index -> tuple of per-env args. Returns env index -> result."""
        if self._in_flight is not None:
            raise RuntimeError(f"VectorEnv.{cmd} while a step_async is in flight: call step_wait first")
        return self._collect(self._send(cmd, per_env))

    def _send(self, cmd: str, per_env: dict):
        """Starts `cmd` on the envs of `per_env` (in-process: runs it); `_collect` returns the results."""
        if self._local is not None:
            idx = sorted(per_env)
            args = list(zip(*[per_env[i] for i in idx])) if idx else []
            res = getattr(self._local, cmd)(idx, *[list(a) for a in args]) if idx else []
            return "local", (dict(zip(idx, res)) if res is not None else {})
        groups: dict = {}
        for i in sorted(per_env):
            w, j = self._where[i]
            groups.setdefault(w, []).append((i, j))
        for w, items in groups.items():
            local_idx = [j for _, j in items]
            cols = list(zip(*[per_env[i] for i, _ in items]))
            self._conns[w].send((cmd, (local_idx, *[list(c) for c in cols])))
        return "workers", groups

    def _collect(self, handle) -> dict:
        kind, payload = handle
        if kind == "local":
            return payload
        out = {}
        for w, items in payload.items():
            res = self._recv(w)
            if res is not None:
                out.update({i: r for (i, _), r in zip(items, res)})
        return out

    # ------------------------------------------------------------------------------ protocol
    def reset(self, seeds: Optional[Sequence[Optional[int]]] = None) -> list:
        seeds = [None] * self.n if seeds is None else list(seeds)
        res = self._call("reset", {i: (seeds[i],) for i in range(self.n)})
        return [res[i] for i in range(self.n)]

    def reset_one(self, i: int, seed: Optional[int] = None) -> TimeStep:
        return self._call("reset", {int(i): (seed,)})[int(i)]

    def step(self, actions, mask=None) -> list:
        self.step_async(actions, mask)
        return self.step_wait()

    def step_async(self, actions, mask=None) -> None:
        """Starts `step(actions, mask)`; the workers step while the caller goes on (in-process envs
        step here). `step_wait()` returns the result; no other call may come in between."""
        if self._in_flight is not None:
            raise RuntimeError("VectorEnv.step_async while a step is in flight: call step_wait first")
        mask = np.ones(self.n, bool) if mask is None else np.asarray(mask, bool)
        self._in_flight = self._send("step", {i: (actions[i],) for i in range(self.n) if mask[i]})

    def step_wait(self) -> list:
        """The result of the `step_async` in flight, as `step` returns it."""
        if self._in_flight is None:
            raise RuntimeError("VectorEnv.step_wait without a step_async")
        handle, self._in_flight = self._in_flight, None
        res = self._collect(handle)
        for i, ts in res.items():
            if ts.error:
                log.warning("env %d raised during step; its episode ended (is_last) and it resets next", i)
        return [res.get(i) for i in range(self.n)]

    def get_state(self) -> list:
        res = self._call("get_state", {i: () for i in range(self.n)})
        return [res[i] for i in range(self.n)]

    def set_state(self, states: Sequence[dict]) -> None:
        if len(states) != self.n:
            raise ValueError(f"set_state got {len(states)} env states for {self.n} envs")
        self._call("set_state", {i: (states[i],) for i in range(self.n)})

    def cpu_time(self) -> float:
        """CPU seconds (all threads) used so far by this process plus every worker (benchmarks)."""
        res = self._call("cpu_time", {i: () for i in range(self.n)}) if self._local is None else {}
        firsts = {self._where[i][0]: res[i] for i in res}
        return time.process_time() + float(sum(firsts.values()))

    def close(self) -> None:
        """Ends the workers; never raises (closing must not mask the outcome of a run)."""
        if getattr(self, "_in_flight", None) is not None:  # a step_async nobody waited for
            try:
                self._collect(self._in_flight)
            except Exception:  # noqa: BLE001
                pass
            self._in_flight = None
        if self._local is not None:
            try:
                self._local.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing envs failed: %s", exc)
            self._local = None
        for conn, p in zip(self._conns, self._procs):
            try:
                conn.send(("close", ()))
                conn.recv()
            except (OSError, EOFError, BrokenPipeError):
                pass
            conn.close()
            p.join(timeout=5)
            if p.is_alive():
                p.kill()  # workers ignore SIGTERM (see `_worker`)
        self._conns, self._procs = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
