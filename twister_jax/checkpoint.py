"""Checkpoints: Orbax steps in `<workdir>/checkpoints`, replay chunks in `<workdir>/replay`.

One checkpoint (one Orbax step directory `<workdir>/checkpoints/<step>/`) holds three items:

* `train`: the `TrainState` pytree (params of world model / actor / critic / slow critic, the three
  optimiser states, the return normaliser, the step counter), saved with `StandardSave`;
* `act`:   the acting state pytree of the training envs (latent, previous action, 8-slot KV cache,
  flags, validity mask), `StandardSave`;
* `host`:  a JSON object with the resolved config (for the compatibility check), readable counters,
  and `state`: the JSON part of everything host-side the next step depends on (the parts'
  `get_state()`: host NumPy RNG states, counters, the observations in flight, the environments'
  states, the metric accumulators since the last log row), encoded by `twister_jax.state_codec`;
* `host_arrays`: the arrays that JSON refers to (images, emulator states as uint8 arrays, ...),
  `StandardSave`.

Nothing is pickled, and restoring never unpickles: JSON and plain arrays only (an object array is
refused), so a checkpoint someone shares cannot run code. With several processes each process
writes its own host state as `<workdir>/host_state/process_<i>/<step>.json` and `.npz` (loaded
with `allow_pickle=False`).

Order of a save (docs/interfaces.md §3 "Replay persistence", docs/original.md §7.6): the replay buffer writes its new
records synchronously into `<workdir>/replay` tagged with the step, then the Orbax step is saved
asynchronously (the arrays are copied first, so the caller may donate the state right away); Orbax
commits the step directory atomically (rename) when every item is written. A kill between the two
leaves replay chunks newer than the newest committed step, which `ReplayBuffer.restore(dir, step)`
ignores and the next save overwrites.

Restore walks the committed steps newest first. A step whose own files fail to read (truncated or
corrupt files, damaged host state) is skipped with a warning, moved aside to
`<workdir>/checkpoints_corrupt/` so the run can save that step number again, and the previous one is
tried. A readable step whose replay is missing or damaged is NOT skipped (that would silently throw
away every step since): `ReplayUnavailableError` names the checkpoint and the replay files, unless
the caller allows an empty replay (`allow_empty_replay`, the train flag `--allow_empty_replay`),
which keeps the train state and starts the replay empty. A checkpoint written with an incompatible
config raises `IncompatibleCheckpointError` naming the differing keys (never skipped: that is a
user error, not damage).

Choices (not in the original, docs/original.md): keys that only schedule the run (`num_train_steps`, `*_every`,
`checkpoint_keep`, `eval_episodes`, `eval_envs`, `compute_dtype`, `matmul_precision`) may change
between a checkpoint and its resume; every other key, including `seed`, must match.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import shutil
import time
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from twister_jax import state_codec
from twister_jax.files import atomic_write

log = logging.getLogger(__name__)

ITEMS = ("train", "act", "host", "host_arrays")

# Keys that may differ between a checkpoint and the run resuming it (they change no shape, no
# stored data and no meaning of the saved state). Everything else must be equal.
RESUMABLE_KEYS = (
    "num_train_steps", "log_every", "figure_every", "checkpoint_every", "checkpoint_keep",
    "eval_every", "eval_episodes", "eval_envs", "compute_dtype", "matmul_precision",
    "replay_on_device",  # the same batches either way
)


class IncompatibleCheckpointError(ValueError):
    """The workdir holds a run made with a different config (another game, other sizes, ...)."""


class ReplayUnavailableError(ValueError):
    """A readable checkpoint whose replay files are missing or damaged."""


class NoCheckpointError(ValueError):
    """A run that must continue from a checkpoint (a finished run being extended) has no readable one."""


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


# Keys of config.json that are bookkeeping, not config (see `record_resume`).
BOOKKEEPING_KEYS = ("resumes",)


# Keys added after runs were written, with the value that run had (an old config.json lacks them).
ADDED_KEYS = {"num_seeds": 1}


def _flat_config(config) -> dict:
    """A config (ConfigDict or its JSON dict) as {dotted key: value}, without bookkeeping keys."""
    d = config if isinstance(config, dict) else config_to_dict(config)
    return {**ADDED_KEYS, **_flatten({k: v for k, v in d.items() if k not in BOOKKEEPING_KEYS})}


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys (dotted) whose values differ and are not in RESUMABLE_KEYS, as 'key: saved -> current'."""
    a, b = _flat_config(saved), _flat_config(current)
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


def resumable_changes(saved: dict, current) -> dict:
    """{dotted key: [saved, current]} for the RESUMABLE_KEYS whose values differ."""
    a, b = _flat_config(saved), _flat_config(current)
    return {k: [a.get(k), b.get(k)] for k in RESUMABLE_KEYS if (k in a or k in b) and a.get(k) != b.get(k)}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _committed_step_dirs(directory: pathlib.Path) -> list[pathlib.Path]:
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.name.isdigit() and p.is_dir()), key=lambda p: int(p.name))


def committed_steps(directory) -> list[int]:
    """The steps of the committed checkpoints in `directory` (a run's `checkpoints/`), oldest first."""
    return [int(p.name) for p in _committed_step_dirs(pathlib.Path(directory))]


def check_workdir_compatible(workdir, config) -> None:
    """Compares `config` with the run already in `workdir`: `config.json` and the config saved in
    every committed checkpoint (a removed or edited config.json does not hide the run).

    Called before anything is written, so a wrong resume fails without side effects. Unreadable
    checkpoint files are left to `Checkpointer.restore` (damage, not a config error).
    """
    workdir = pathlib.Path(workdir)
    path = workdir / "config.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # ValueError: undecodable bytes or not JSON
            raise IncompatibleCheckpointError(f"{path} is unreadable ({_first_line(exc)}); restore or remove it") from None
        if not isinstance(saved, dict):
            raise IncompatibleCheckpointError(f"{path} is not a JSON object; restore or remove it")
        check_compatible(saved, config, str(path))
    for step_dir in reversed(_committed_step_dirs(workdir / "checkpoints")):  # newest first
        try:
            saved = json.loads((step_dir / "host" / "metadata").read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        check_compatible(saved, config, f"checkpoint {step_dir}")


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
    host: dict          # the parts' host state (decoded JSON + arrays)
    meta: dict          # readable counters saved beside it
    replay_restored: bool = True  # False: the replay was unavailable and left empty (allowed)


class Checkpointer:
    """Orbax `CheckpointManager` plus the replay directory and the host-state blob.

    Args:
      workdir: the run directory (see docs/interfaces.md §6).
      config: the resolved config (its `checkpoint_keep` sets how many steps are kept).
      async_save: write the Orbax step in a background thread (default True).
    """

    def __init__(self, workdir, config, *, async_save: bool = True, read_only: bool = False):
        self.workdir = pathlib.Path(workdir)
        self.directory = self.workdir / "checkpoints"
        self.replay_dir = self.workdir / "replay"
        # Multi-host: each process has its own envs and replay (docs/interfaces.md §5); Orbax writes its items
        # from process 0 only, so every process keeps its host state in files of its own.
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
                self.directory.absolute(), options=options, item_names=ITEMS)

    # ----------------------------------------------------------------------------------- saving
    def save(self, step: int, train_state, act_state, host: dict, replay=None, meta: Optional[dict] = None) -> bool:
        """Saves replay (synchronously, first), then the Orbax step (asynchronously).

        Returns False when this step is already the newest checkpoint (nothing written).
        """
        step = int(step)
        latest = self.manager.latest_step()
        if latest is not None and latest >= step:
            return False
        for directory, buffer in self._replay_dirs(replay):
            directory.mkdir(parents=True, exist_ok=True)
            buffer.save(str(directory), step)
        tree, arrays = state_codec.encode(host)
        host_item = {"step": step, "config": config_to_dict(self.config), "meta": meta or {},
                     "time": time.time()}
        if self.multiprocess:
            self.host_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.host_dir / f"{step}.npz", lambda f: np.savez(f, **arrays))
            atomic_write(self.host_dir / f"{step}.json", json.dumps(tree))
            arrays = {}
        else:
            host_item["state"] = tree
        self.manager.save(step, args=ocp.args.Composite(
            train=ocp.args.StandardSave(_copy_tree(train_state)),
            act=ocp.args.StandardSave(_copy_tree(act_state)),
            host=ocp.args.JsonSave(host_item),
            host_arrays=ocp.args.StandardSave(arrays or {"none": np.zeros(1, np.uint8)}),
        ), force=True)
        return True

    def _replay_dirs(self, replay) -> list:
        """[(directory, buffer)]: one `ReplayBuffer` in `replay/`, or a group's {name: buffer}, each
        in `replay/<name>/` (docs/architecture.md §9)."""
        if replay is None:
            return []
        if isinstance(replay, dict):
            return [(self.replay_dir / name, buffer) for name, buffer in replay.items()]
        return [(self.replay_dir, replay)]

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
                items=("train", "act", "host"), quarantine: bool = True,
                allow_empty_replay: bool = False) -> Optional[Restored]:
        """Restores the newest readable checkpoint, or returns None when there is none.

        Args:
          abstract_train / abstract_act: restore targets (see `abstract_like`); None skips the item.
          replay: a fresh `ReplayBuffer` to restore to the same step (skipped when None), or a
            group's {name: ReplayBuffer} (each from `replay/<name>/`).
          items: which items to read.
          quarantine: move unreadable steps aside (False for read-only users such as evaluate).
          allow_empty_replay: when the replay of the newest readable checkpoint is missing or
            damaged, return that checkpoint with the replay left empty (`replay_restored=False`)
            instead of raising.
        Raises:
          IncompatibleCheckpointError: the newest readable checkpoint has another config.
          ReplayUnavailableError: its replay is missing or damaged (and not allowed to be).
        """
        for step in reversed(self.steps()):
            try:
                meta = self.manager.restore(step, args=ocp.args.Composite(host=ocp.args.JsonRestore()))["host"]
                check_compatible(meta["config"], self.config, f"checkpoint {self.directory / str(step)}")
                if "blob" in meta and "host" in items:
                    raise IncompatibleCheckpointError(
                        f"checkpoint {self.directory / str(step)} holds a pickled host state (written by an "
                        f"older twister_jax); it is never unpickled. Resume it with that version, or start a "
                        f"new --workdir.")
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
                if "host" in items and not self.multiprocess:
                    want["host_arrays"] = ocp.args.StandardRestore()
                out = self.manager.restore(step, args=ocp.args.Composite(**want)) if want else {}
                host = self._read_host(step, meta, out) if "host" in items else {}
            except Exception as exc:  # noqa: BLE001
                self._skip(step, exc, quarantine)
                continue
            replay_restored = all([self._restore_replay(buffer, directory, step, allow_empty_replay)
                                   for directory, buffer in self._replay_dirs(replay)])
            return Restored(step=step, train_state=out.get("train"), act_state=out.get("act"),
                            host=host, meta=meta.get("meta", {}), replay_restored=replay_restored)
        return None

    def _read_host(self, step: int, meta: dict, out) -> dict:
        """The host state of `step` from JSON and plain arrays (never pickle)."""
        if self.multiprocess:
            tree = json.loads((self.host_dir / f"{step}.json").read_text())
            with np.load(self.host_dir / f"{step}.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            tree, arrays = meta["state"], dict(out["host_arrays"])
        return state_codec.decode(tree, arrays)

    def _restore_replay(self, replay, directory: pathlib.Path, step: int, allow_empty: bool) -> bool:
        try:
            replay.restore(str(directory), step)
            return True
        except Exception as exc:  # noqa: BLE001 - missing, truncated or foreign files
            where = self.directory / str(step)
            problem = f"{type(exc).__name__}: {str(exc)[:800]}"
            if not allow_empty:
                raise ReplayUnavailableError(
                    f"checkpoint {where} is intact but its replay in {directory} is missing or damaged "
                    f"({problem}). Restore those files to resume exactly, or re-run with --allow_empty_replay "
                    f"to keep the trained state (step {step}) and refill the replay from scratch.") from None
            log.warning("replay of checkpoint %s unavailable (%s); resuming with an empty replay as asked "
                        "(--allow_empty_replay)", where, problem)
            return False

    def _skip(self, step: int, exc: Exception, quarantine: bool) -> None:
        reason = f"{type(exc).__name__}: {_first_line(exc)[:300]}"
        if quarantine:
            self._quarantine(step, reason)
        else:
            log.warning("checkpoint step %d is unreadable (%s); trying the previous one", step, reason)
