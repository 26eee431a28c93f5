"""The run directory's small files: `config.json` and `done.json` (docs/interfaces.md §6; no jax import).

`config.json` holds the resolved config, plus `resumes`: a record of the resumable keys (those that may
change between a checkpoint and its resume, e.g. `compute_dtype`, see `checkpoint.RESUMABLE_KEYS`)
that did change, one entry per such resume: `{"step": <step resumed from>, "changed": {key: [before,
after]}}`. So the file always tells under which settings every step ran. `done.json` is written last,
atomically, when a run finishes. A run counts as finished for a budget of `num_train_steps` when its
done.json's `step` reaches it (`finished`); a finished run given a larger budget is extended.
"""
from __future__ import annotations

import json
import pathlib
import sys

from twister_jax.files import atomic_write_json


def write_config(workdir, config, step: int) -> dict:
    """Writes `<workdir>/config.json` for a run starting or resuming at `step`; returns the changes
    recorded (and printed) for this resume, {} when none."""
    from twister_jax import checkpoint

    path = pathlib.Path(workdir) / "config.json"
    current = checkpoint.config_to_dict(config)
    resumes, changed = [], {}
    if path.is_file():
        saved = json.loads(path.read_text())
        resumes = list(saved.get("resumes", []))
        changed = checkpoint.resumable_changes(saved, current)
        if changed:
            resumes.append({"step": int(step), "changed": changed})
            print(f"resuming at step {step} with changed settings: "
                  + "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
                  + " (recorded in config.json 'resumes')", file=sys.stderr, flush=True)
    if resumes:
        current["resumes"] = resumes
    atomic_write_json(path, current)
    return changed


def write_done(workdir, result: dict) -> None:
    atomic_write_json(pathlib.Path(workdir) / "done.json", result)


def read_done(workdir) -> dict | None:
    """`<workdir>/done.json` as a dict, or None when the run has not finished.

    Raises:
      ValueError: the file exists but is not a JSON object with an integer `step` (one line).
    """
    path = pathlib.Path(workdir) / "done.json"
    if not path.exists():
        return None
    try:
        done = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path} is unreadable ({why}); restore or remove it") from None
    if not isinstance(done, dict) or not isinstance(done.get("step"), int):
        raise ValueError(f"{path} has no integer 'step'; restore or remove it")
    return done


def finished(workdir, num_train_steps: int | None = None) -> bool:
    """Whether the run in `workdir` is done: its done.json exists and (when `num_train_steps` is given)
    its `step` reaches that budget. Against a budget, an unreadable done.json counts as not finished
    (the training command then stops with one line naming it)."""
    if not (pathlib.Path(workdir) / "done.json").exists():
        return False
    if num_train_steps is None:
        return True
    try:
        return read_done(workdir)["step"] >= int(num_train_steps)
    except ValueError:
        return False


def exit_status(returncode: int, workdir, num_train_steps: int | None = None) -> str:
    """How a training process on `workdir` ended, for launchers: "done" (exit 0 and `finished` at the
    budget), "stopped ..." (exit 0 but not finished: a SIGTERM / SIGINT saved a checkpoint and the same
    command resumes it) or "FAILED (exit N)"."""
    if returncode != 0:
        return f"FAILED (exit {returncode})"
    return "done" if finished(workdir, num_train_steps) else "stopped (checkpoint saved; the same command resumes it)"


def remove_done(workdirs) -> None:
    """Deletes the done.json of each of `workdirs` (a finished run being extended is unfinished again)."""
    for workdir in workdirs:
        (pathlib.Path(workdir) / "done.json").unlink(missing_ok=True)
