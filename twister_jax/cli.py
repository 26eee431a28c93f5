"""Command-line helpers shared by the `experiments/` scripts (no jax import)."""
from __future__ import annotations

import sys


def fail(msg: str):
    """Bad input: one `error:` line on stderr naming the value and what is allowed, exit status 2."""
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)
