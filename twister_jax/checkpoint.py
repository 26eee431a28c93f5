"""Checkpoints: Orbax steps in `<workdir>/checkpoints`, replay chunks in `<workdir>/replay`.

One checkpoint (one Orbax step directory `<workdir>/checkpoints/<step>/`) holds three items:

* `train`: the `TrainState` pytree (params of world model / actor / critic / slow critic, the three
  optimiser states, the return normaliser, the step counter), saved with `StandardSave`;
* `act`:   the acting state pytree of the training envs (latent, previous action, 8-slot KV cache,
  flags, validity mask), `StandardSave`;
* `host`:  a JSON object with the resolved config (for the compatibility check), readable counters,
  and `blob`: a base64 pickle of everything host-side the next step depends on (host NumPy RNG
  states, counters, the observations in flight, the environments' `get_state()` dicts -- ALE states
  are bytes, which is why they travel pickled --, the metric accumulators since the last log row).

Order of a save (INTERFACES §3 "Replay persistence", spec 7.6): the replay buffer writes its new
records synchronously into `<workdir>/replay` tagged with the step, then the Orbax step is saved
asynchronously (the arrays are copied first, so the caller may donate the state right away); Orbax
commits the step directory atomically (rename) when every item is written. A kill between the two
leaves replay chunks newer than the newest committed step, which `ReplayBuffer.restore(dir, step)`
ignores and the next save overwrites.

Restore walks the committed steps newest first. A step that fails to read (truncated or corrupt
files, a damaged blob, replay chunks missing) is skipped with a warning, moved aside to
`<workdir>/checkpoints_corrupt/` so the run can save that step number again, and the previous one is
tried. A checkpoint written with an incompatible config raises `IncompatibleCheckpointError` naming
the differing keys (never skipped: that is a user error, not damage).

Choices (not in the spec): keys that only schedule the run (`num_train_steps`, `*_every`,
`checkpoint_keep`, `eval_episodes`, `eval_envs`, `compute_dtype`, `matmul_precision`) may change
between a checkpoint and its resume; every other key, including `seed`, must match.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import pathlib
import pickle
import shutil
import time
from typing import Any, Callable, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

# Keys that may differ between a checkpoint and the run resuming it (they change no shape, no
# stored data and no meaning of the saved state). Everything else must be equal.
RESUMABLE_KEYS = (
    "num_train_steps", "log_every", "figure_every", "checkpoint_every", "checkpoint_keep",
    "eval_every", "eval_episodes", "eval_envs", "compute_dtype", "matmul_precision",
)


class IncompatibleCheckpointError(ValueError):
    """The workdir holds a run made with a different config (another game, other sizes, ...)."""


def config_to_dict(config) -> dict:
    """The config as plain JSON data (tuples become lists), as written to `config.json`."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return json.loads(json.dumps(raw, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys (dotted) whose values differ and are not in RESUMABLE_KEYS, as 'key: saved -> current'."""
    a, b = _flatten(saved), _flatten(config_to_dict(current) if not isinstance(current, dict) else current)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in RESUMABLE_KEYS:
            continue
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if va != vb:
            diffs.append(f"{key}: {va!r} -> {vb!r}")
    return diffs


def check_compatible(saved: dict, current, where: str) -> None:
    """Raises IncompatibleCheckpointError naming the differing keys."""
    diffs = config_differences(saved, current)
    if diffs:
        raise IncompatibleCheckpointError(
            f"{where} was written with an incompatible config; differing keys: " + "; ".join(diffs)
            + ". Use another --workdir, or the same config.")


def check_workdir_compatible(workdir, config) -> None:
    """Compares `config` with `<workdir>/config.json` if the workdir already holds a run.

    Called by the CLI before anything is written, so a wrong resume fails without side effects.
    """
    path = pathlib.Path(workdir) / "config.json"
    if path.exists():
        check_compatible(json.loads(path.read_text()), config, str(path))


def _copy_tree(tree):
    """Fresh device buffers, so the caller may donate `tree` while Orbax still writes it."""
    return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else np.array(x, copy=True), tree)


def abstract_like(tree):
    """ShapeDtypeStruct (with sharding) for every leaf: the restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


@dataclasses.dataclass
class Restored:
    step: int
    train_state: Any
    act_state: Any
    host: dict          # the unpickled host blob
    meta: dict          # the JSON item (config, counters)


class Checkpointer:
    """Orbax `CheckpointManager` plus the replay directory and the host-state blob.

    Args:
      workdir: the run directory (see INTERFACES §6).
      config: the resolved config (its `checkpoint_keep` sets how many steps are kept).
      async_save: write the Orbax step in a background thread (default True).
    """

    def __init__(self, workdir, config, *, async_save: bool = True, read_only: bool = False):
        self.workdir = pathlib.Path(workdir)
        self.directory = self.workdir / "checkpoints"
        self.replay_dir = self.workdir / "replay"
        # Multi-host: each process has its own envs and replay (INTERFACES §5); Orbax writes the JSON
        # item from process 0 only, so the other processes keep their host blob in a file of their own.
        self.multiprocess = jax.process_count() > 1
        if self.multiprocess:
            self.replay_dir = self.workdir / "replay" / f"process_{jax.process_index()}"
            self.host_dir = self.workdir / "host_state" / f"process_{jax.process_index()}"
        self.config = config
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else int(config.checkpoint_keep),
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=not read_only,
        )
        if read_only and not self.directory.exists():
            self.manager = None
        else:
            self.manager = ocp.CheckpointManager(
                self.directory.absolute(), options=options, item_names=("train", "act", "host"))

    # ----------------------------------------------------------------------------------- saving
    def save(self, step: int, train_state, act_state, host: dict, replay=None, meta: Optional[dict] = None) -> bool:
        """Saves replay (synchronously, first), then the Orbax step (asynchronously).

        Returns False when this step is already the newest checkpoint (nothing written).
        """
        step = int(step)
        latest = self.manager.latest_step()
        if latest is not None and latest >= step:
            return False
        if replay is not None:
            self.replay_dir.mkdir(parents=True, exist_ok=True)
            replay.save(str(self.replay_dir), step)
        blob = base64.b64encode(pickle.dumps(host, protocol=pickle.HIGHEST_PROTOCOL)).decode("ascii")
        if self.multiprocess:
            self.host_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.host_dir / f".{step}.tmp"
            tmp.write_text(blob)
            os.replace(tmp, self.host_dir / f"{step}.b64")
        host_item = {"step": step, "config": config_to_dict(self.config), "meta": meta or {},
                     "blob": blob, "time": time.time()}
        self.manager.save(step, args=ocp.args.Composite(
            train=ocp.args.StandardSave(_copy_tree(train_state)),
            act=ocp.args.StandardSave(_copy_tree(act_state)),
            host=ocp.args.JsonSave(host_item),
        ), force=True)
        return True

    def wait(self) -> None:
        if self.manager is not None:
            self.manager.wait_until_finished()

    def close(self) -> None:
        if self.manager is not None:
            self.manager.wait_until_finished()
            self.manager.close()

    # ---------------------------------------------------------------------------------- restoring
    def steps(self) -> list[int]:
        if self.manager is None:
            return []
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def _quarantine(self, step: int, reason: str) -> None:
        src = self.directory / str(step)
        dst = self.workdir / "checkpoints_corrupt" / f"{step}-{int(time.time())}"
        log.warning("checkpoint %s is unreadable (%s); moved to %s, falling back to the previous one",
                    src, reason, dst)
        if jax.process_index() == 0 and src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dst))
        self.manager.reload()

    def restore(self, abstract_train=None, abstract_act=None, replay=None, *,
                items=("train", "act", "host"), quarantine: bool = True) -> Optional[Restored]:
        """Restores the newest readable checkpoint, or returns None when there is none.

        Args:
          abstract_train / abstract_act: restore targets (see `abstract_like`); None skips the item.
          replay: a fresh `ReplayBuffer` to restore to the same step (skipped when None).
          items: which items to read.
          quarantine: move unreadable steps aside (False for read-only users such as evaluate).
        Raises:
          IncompatibleCheckpointError: the newest readable checkpoint has another config.
        """
        for step in reversed(self.steps()):
            try:
                meta = self.manager.restore(step, args=ocp.args.Composite(host=ocp.args.JsonRestore()))["host"]
                check_compatible(meta["config"], self.config, f"checkpoint {self.directory / str(step)}")
            except IncompatibleCheckpointError:
                raise
            except Exception as exc:  # noqa: BLE001 - any read failure means a damaged step
                self._skip(step, exc, quarantine)
                continue
            try:
                want = {}
                if abstract_train is not None and "train" in items:
                    want["train"] = ocp.args.StandardRestore(abstract_train)
                if abstract_act is not None and "act" in items:
                    want["act"] = ocp.args.StandardRestore(abstract_act)
                out = self.manager.restore(step, args=ocp.args.Composite(**want)) if want else {}
                blob = meta["blob"]
                if self.multiprocess and "host" in items:
                    blob = (self.host_dir / f"{step}.b64").read_text()
                host = pickle.loads(base64.b64decode(blob)) if "host" in items else {}
                if replay is not None:
                    replay.restore(str(self.replay_dir), step)
            except Exception as exc:  # noqa: BLE001
                self._skip(step, exc, quarantine)
                continue
            return Restored(step=step, train_state=out.get("train"), act_state=out.get("act"),
                            host=host, meta=meta.get("meta", {}))
        return None

    def _skip(self, step: int, exc: Exception, quarantine: bool) -> None:
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        if quarantine:
            self._quarantine(step, reason)
        else:
            log.warning("checkpoint step %d is unreadable (%s); trying the previous one", step, reason)
