r"""Train TWISTER: `python -m twister_jax.train --config=configs/atari.py:alien --workdir=runs/alien`.

Flags:
  --config      an ml_collections config file with its argument, `file.py:arg`
                (`configs/atari.py:<game>`, `configs/dmc.py:<task>`, `configs/tiny.py:<variant>`).
  --config.KEY=VALUE   override any key of the config, e.g. `--config.seed=3 --config.batch_size=32`.
  --workdir     the run directory; re-running the same command on it resumes from its newest checkpoint.
  --multihost   call `jax.distributed.initialize()` first (multi-host TPU/GPU); every host runs its own
                environments and replay and feeds its share of the global batch.

An unknown config key, game or task, or a config that contradicts the run already in `--workdir`,
stops the program with a non-zero exit status and a message naming the bad value before anything
is written. The outputs are described in README.md ("Outputs") and INTERFACES.md §6.
"""
from __future__ import annotations

import json
import re
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None,
    "Config file and argument, `file.py:arg`, e.g. configs/atari.py:alien; override keys with "
    "--config.KEY=VALUE.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (outputs, checkpoints); an existing one is resumed.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() before anything else.")
flags.mark_flags_as_required(["config", "workdir"])


def resolve_config(config):
    """Normalises the task name after overrides and re-derives the per-task table values.

    `--config.env.task=breakout` on top of `configs/atari.py:alien` must also change the action
    count; the suite tables (spec 1.1 / 1.2) are authoritative for `env.num_actions` (and the DMC
    camera), and the env checks it again at start-up. Then `validate()` runs again on the result.

    Raises:
      ValueError: unknown game / task / suite or an invalid value, naming it.
    """
    from twister_jax import config_files, suites
    import pathlib

    config.unlock()
    suite = config.env.suite
    if suite == "atari":
        game = suites.normalize_game(config.env.task)
        config.env.task = game
        config.env.num_actions = suites.ATARI_GAMES[game]
    elif suite == "dmc":
        task = suites.normalize_dmc_task(config.env.task)
        _, _, num_actions, camera = suites.DMC_TASKS[task]
        config.env.task = task
        config.env.num_actions = num_actions
        config.env.camera = camera
    elif suite == "fake":
        if config.env.task not in ("discrete", "continuous"):
            raise ValueError(f"unknown fake task {config.env.task!r}; allowed: discrete, continuous")
    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "common.py"
    common = config_files.load_sibling(str(path), "common.py") if path.exists() else None
    if common is not None:
        return common.validate(config)
    config.lock()
    return config


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln):
            return ln
    return lines[-1] if lines else str(text)


def parse_flags(argv):
    """absl flag parsing with one-line errors (exit status 2) instead of tracebacks."""
    try:
        return FLAGS(argv)
    except (AttributeError, KeyError) as exc:  # an override naming a key the config lacks
        text = str(exc).replace("\\n", "\n").replace("\\", "")
        found = re.search(r"([A-Za-z0-9_]+)", text)
        key = found.group(1) if found else text
        hint = re.search(r"Did you mean [^?]*\?", text)
        bad = [a for a in argv if a.startswith("--config.") and re.search(rf"\b{re.escape(key)}\b", a)]
        print(f"error: unknown config key {key!r}" + (f" in {bad[0].split('=')[0]}" if bad else "")
              + (f" ({hint.group(0)})" if hint else "")
              + "; the keys are those of configs/common.py (INTERFACES.md section 2)", file=sys.stderr)
    except flags.Error as exc:
        print(f"error: {_last_error_line(exc)}", file=sys.stderr)
        print("Pass --help to see the flags.", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:  # Orbax logs every save at INFO; keep the console readable
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        config = resolve_config(FLAGS.config)
        from twister_jax import checkpoint
        checkpoint.check_workdir_compatible(FLAGS.workdir, config)
    except ValueError as exc:  # includes IncompatibleCheckpointError
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if FLAGS.multihost:
        import jax
        jax.distributed.initialize()
    from twister_jax import loop
    result = loop.run(config, FLAGS.workdir)
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
