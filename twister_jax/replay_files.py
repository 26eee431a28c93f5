"""The replay directory's file format (docs/interfaces.md §3 "Replay persistence"): file names, which
steps are complete, which files a step needs, and dropping an abandoned future. NumPy-free, no jax.

`chunk_<step:012d>.npz` holds the records added since the previous save; `state_<step:012d>.json`,
written last, marks step `step` complete and lists its chunks. `ReplayBuffer.save` / `restore`
(twister_jax/replay.py) write and read them.
"""
from __future__ import annotations

import json
import pathlib
import re

_STATE_RE = re.compile(r"^state_(\d+)\.json$")
_CHUNK_RE = re.compile(r"^chunk_(\d+)\.npz$")


def state_name(step: int) -> str:
    return f"state_{int(step):012d}.json"


def chunk_name(step: int) -> str:
    return f"chunk_{int(step):012d}.npz"


def drop_after(directory: pathlib.Path, step: int) -> None:
    """Deletes state files, then chunks, tagged after `step` (an abandoned future), and the
    temporary files a kill may have left behind."""
    for p in directory.iterdir():
        if p.name.startswith((".state_", ".chunk_")) and ".tmp" in p.name:
            p.unlink()
    for regex in (_STATE_RE, _CHUNK_RE):
        for p in directory.iterdir():
            m = regex.match(p.name)
            if m and int(m.group(1)) > step:
                p.unlink()


def saved_steps(directory) -> list[int]:
    """Steps with a complete state file in `directory`, ascending."""
    directory = pathlib.Path(directory)
    if not directory.exists():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _STATE_RE.match(p.name)))


def missing_files(directory, step: int) -> list[str]:
    """The files a restore to `step` needs that are not in `directory` (state file, chunks)."""
    directory = pathlib.Path(directory)
    path = directory / state_name(step)
    if not path.is_file():
        return [str(path)]
    try:
        chunks = json.loads(path.read_text())["chunks"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [str(directory / c["file"]) for c in chunks if not (directory / c["file"]).is_file()]
