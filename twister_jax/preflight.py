"""Checks a run's inputs before anything is written (issue 13: no fault loses work, every fault is named).

`check_run(config, workdir)` is called by `python -m twister_jax.train` (and by `loop.run`) after the
config is resolved and before the workdir is created. Each problem raises a `PreflightError` (a
`ValueError`) whose message is one line naming the bad value and what is allowed; the CLI prints it as
`error: ...` and exits with status 2.

Order: the cheap path checks first (no jax import), then the config in an existing run directory,
then the batch size against the devices (this one imports jax and initialises its backend, so with
`--multihost` it runs after `jax.distributed.initialize()`; pass `devices=False` before that).

Writability is judged with `os.access(..., W_OK | X_OK)` on the workdir, or, when it does not exist
yet, on its nearest existing parent (where it will be created). Nothing is written to probe: the
rule is that a refused run leaves no trace. `access(2)` reports a read-only file system (`EROFS`)
even for root, and permission bits for other users; root ignores permission bits when writing, so
`access` saying yes for root on a writable file system is also the truth. (A network file system
whose server refuses writes the client cannot predict still fails later, at the first write.)
"""
from __future__ import annotations

import os
import pathlib


class PreflightError(ValueError):
    """A run input that cannot work; the message is one line."""


class WorkdirNotADirectoryError(PreflightError):
    """The workdir (or a parent of it) is an existing file."""


class WorkdirNotWritableError(PreflightError):
    """The workdir, or the parent it would be created in, cannot be written."""


def _why_not_writable(path: pathlib.Path) -> str:
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied"


def check_writable_dir(path, what: str = "workdir") -> None:
    """Raises unless `path` is (or can be created as) a directory this process can write.

    Args:
      path: the directory; it may not exist yet.
      what: how the message names it (e.g. "workdir", "--video folder").
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise WorkdirNotADirectoryError(
            f"{what} {str(path)!r} is a file, not a directory; pass a directory path (it is created if missing)")
    target = path
    while not target.exists():  # the nearest existing parent: where the folders will be created
        if target.parent == target:
            break
        target = target.parent
    if not target.is_dir():
        raise WorkdirNotADirectoryError(
            f"{what} {str(path)!r} cannot be created: {str(target)!r} is a file, not a directory; "
            f"pass a path under a directory")
    if not os.access(target, os.W_OK | os.X_OK):
        where = "" if target == path else f" (it would be created in {str(target)!r})"
        raise WorkdirNotWritableError(
            f"{what} {str(path)!r} is not writable{where}: {_why_not_writable(target)}; "
            f"pass a directory this user can write to")


def check_run(config, workdir, *, devices: bool = True) -> None:
    """Every check of a training run's inputs that can be made before anything is written.

    Args:
      config: the resolved config (`train.resolve_config`).
      workdir: the run directory (may not exist yet).
      devices: also check `config.batch_size` against the devices and processes (imports jax and
        initialises its backends; with multi-host, call it after `jax.distributed.initialize()`).
    Raises:
      PreflightError (a ValueError): the workdir (or a parent) is a file, or is not writable.
      checkpoint.IncompatibleCheckpointError (a ValueError): the workdir holds a different run, or
        its config.json is unreadable.
      PreflightError: a finished run (done.json) given a larger `num_train_steps` has no checkpoint
        to continue from, or its done.json is unreadable.
      ValueError: the batch does not divide over the devices (`sharding.check_batch_size`), or
        `replay_on_device="on"` with several devices (`frame_store.wanted`).
    """
    check_writable_dir(workdir)
    from twister_jax import checkpoint  # pylint: disable=import-outside-toplevel
    checkpoint.check_workdir_compatible(workdir, config)
    check_extension(config, workdir)
    if devices:
        from twister_jax import sharding  # pylint: disable=import-outside-toplevel
        import jax  # pylint: disable=import-outside-toplevel
        if int(config.get("num_seeds", 1)) > 1 and jax.process_count() > 1:
            raise PreflightError(f"config.num_seeds={config.num_seeds} runs a group of seeds in one process; "
                                 f"with --multihost ({jax.process_count()} processes) use num_seeds=1")
        sharding.check_batch_size(int(config.batch_size), sharding.mesh_for(config))
        from twister_jax import frame_store  # pylint: disable=import-outside-toplevel
        frame_store.wanted(config)  # replay_on_device="on" needs one device


def check_extension(config, workdir) -> None:
    """A finished run given a larger `num_train_steps` is extended from its newest checkpoint
    (`loop.run`); that needs a checkpoint, else the run would silently start again from step 0.

    Raises:
      PreflightError: done.json unreadable, or a run to extend with no committed checkpoint.
    """
    from twister_jax import checkpoint, rundir  # pylint: disable=import-outside-toplevel
    try:
        done = rundir.read_done(workdir)
    except ValueError as exc:
        raise PreflightError(str(exc)) from None
    if done is None or done["step"] >= int(config.num_train_steps):
        return
    ckpts = pathlib.Path(workdir) / "checkpoints"
    if not checkpoint.committed_steps(ckpts):
        raise PreflightError(f"cannot extend the finished run in {workdir} (done at step {done['step']}) to "
                             f"num_train_steps={config.num_train_steps}: {ckpts} holds no checkpoint to "
                             f"continue from")
