"""Command-line helpers shared by the `experiments/` scripts (no jax import)."""
from __future__ import annotations

import ast
import sys


def fail(msg: str):
    """Bad input: one `error:` line on stderr naming the value and what is allowed, exit status 2."""
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def parse_overrides(items) -> list[tuple[str, object]]:
    """``KEY=VALUE`` strings -> ``[(dotted key, Python literal)]``; a malformed item exits with status 2."""
    overrides = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--set={item!r} is not KEY=VALUE")
        try:
            overrides.append((key, ast.literal_eval(value)))
        except (ValueError, SyntaxError):
            fail(f"--set={item!r}: {value!r} is not a Python literal (e.g. 16, 3e-4, 'name', (0.25, 1.0))")
    return overrides


def with_overrides(config, overrides):
    """A locked copy of ml_collections `config` with ``(dotted key, value)`` overrides; an unknown key exits
    with status 2."""
    c = config.copy_and_resolve_references()
    c.unlock()
    for key, value in overrides:
        *parents, leaf = key.split(".")
        node = c
        for name in parents:
            node = node.get(name) if hasattr(node, "get") else None
        if node is None or not hasattr(node, "keys") or leaf not in node:
            fail(f"--set {key}: no such config key")
        try:
            node[leaf] = value
        except TypeError as exc:      # ml_collections refuses a value of another type than the field's
            fail(f"--set {key}={value!r}: {exc}")
    c.lock()
    return c
