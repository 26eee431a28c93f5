"""The run directory's small files: `config.json` and `done.json` (docs/interfaces.md §6; no jax import).

`config.json` holds the resolved config, plus `resumes`: a record of the resumable keys (those that may
change between a checkpoint and its resume, e.g. `compute_dtype`, see `checkpoint.RESUMABLE_KEYS`)
that did change, one entry per such resume: `{"step": <step resumed from>, "changed": {key: [before,
after]}}`. So the file always tells under which settings every step ran. `done.json` is written last,
atomically, when a run finishes.
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
