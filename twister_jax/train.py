r"""Train TWISTER: `python -m twister_jax.train --config=configs/atari.py:alien --workdir=runs/alien`.

Flags:
  --config      an ml_collections config file with its argument, `file.py:arg`
                (`configs/atari.py:<game>`, `configs/dmc.py:<task>`, `configs/tiny.py:<variant>`).
  --config.KEY=VALUE   override any key of the config, e.g. `--config.seed=3 --config.batch_size=32`.
  --workdir     the run directory; re-running the same command on it resumes from its newest checkpoint.
                A finished run (done.json) given a larger --config.num_train_steps is extended from
                its final checkpoint.
  --multihost   call `jax.distributed.initialize()` first (multi-host TPU/GPU); every host runs its own
                environments and replay and feeds its share of the global batch.
  --config.num_seeds=N  train the seeds seed .. seed+N-1 in this one process (a group, one vmapped
                step; docs/architecture.md §9): run i writes `<workdir>/seed_<seed+i>/`, the checkpoints
                and replays live once in `<workdir>`.
  --allow_empty_replay   resume a checkpoint whose replay files are missing or damaged with an empty
                replay (the train state is kept); without it such a run stops, naming the files.

Bad input stops the program before anything is written, with exit status 2 and one `error:` line
naming the bad value and what is allowed: a missing or non-Python config file, an unknown flag,
config key, game or task, a workdir that is a file or is not writable, a config that contradicts the
run already in `--workdir`, a batch that does not divide over the devices, a finished run to extend
that has no checkpoint or an unreadable done.json (`twister_jax.preflight`).
Library log noise is kept off stderr (`twister_jax.quiet`; any `--verbosity` shows it all). The
outputs are described in README.md ("Outputs") and docs/interfaces.md §6.
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
flags.DEFINE_bool("allow_empty_replay", False,
                  "Resume a checkpoint whose replay files are missing or damaged with an empty replay "
                  "(keeps the train state; new episodes refill the replay). Without it such a run stops.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() before anything else.")
flags.mark_flags_as_required(["config", "workdir"])


def resolve_config(config):
    """Normalises the task name after overrides and re-derives the per-task table values.

    `--config.env.task=breakout` on top of `configs/atari.py:alien` must also change the action
    count; the suite tables (docs/original.md §1.1 / §1.2) are authoritative for `env.num_actions` (and the DMC
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
        from twister_jax.envs.fake import TASKS
        if config.env.task not in TASKS:
            raise ValueError(f"unknown fake task {config.env.task!r}; allowed: {', '.join(TASKS)}")
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


def _one_line(text) -> str:
    """A multi-line message as one line (the project rule: one line per bad input)."""
    return "; ".join(ln.strip() for ln in str(text).splitlines() if ln.strip())


def _config_flag_value(argv):
    """The value given to --config in `argv` (`--config=V`, `-config=V` or `--config V`; the last
    one, as absl takes it), else None."""
    value = None
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            break
        for prefix in ("--config=", "-config="):
            if arg.startswith(prefix):
                value = arg[len(prefix):]
        if arg in ("--config", "-config") and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def _config_file_error(value):
    """A one-line message when the file part of a --config value is not a readable file, else None."""
    import pathlib

    path = pathlib.Path(value.split(":", 1)[0])
    if path.is_file():
        return None
    shipped = pathlib.Path(__file__).resolve().parents[1] / "configs"
    allowed = ("configs/atari.py:<game>, configs/dmc.py:<task>, configs/tiny.py:<variant>"
               + (f" (in {shipped})" if shipped.is_dir() else ""))
    where = str(path) if path.is_absolute() else f"{path} (from {pathlib.Path.cwd()})"
    state = "is not a file" if path.exists() else "not found"
    return f"config file {where} {state} in --config={value}; pass --config=FILE.py:ARG, e.g. {allowed}"


def parse_flags(argv):
    """absl flag parsing with one-line errors (exit status 2) instead of tracebacks."""
    value = _config_flag_value(argv)
    problem = _config_file_error(value) if value is not None else None
    if problem:  # before absl runs the file: a missing file would only fail at first use, with a traceback
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        rest = FLAGS(argv)
        if FLAGS["config"].value is not None:
            FLAGS.config.keys()  # ml_collections defers a file that failed to load (OSError) to first use
        return rest
    except (AttributeError, KeyError) as exc:  # an override naming a key the config lacks
        text = str(exc).replace("\\n", "\n").replace("\\", "")
        found = re.search(r"([A-Za-z0-9_]+)", text)
        key = found.group(1) if found else text
        hint = re.search(r"Did you mean [^?]*\?", text)
        bad = [a for a in argv if a.startswith("--config.") and re.search(rf"\b{re.escape(key)}\b", a)]
        print(f"error: unknown config key {key!r}" + (f" in {bad[0].split('=')[0]}" if bad else "")
              + (f" ({hint.group(0)})" if hint else "")
              + "; the keys are those of configs/common.py (docs/interfaces.md §2)", file=sys.stderr)
    except OSError as exc:  # the config file exists but could not be read
        print(f"error: cannot load the config file of --config={value}: {_last_error_line(exc)}", file=sys.stderr)
    except SyntaxError as exc:  # a config file that is not valid Python
        print(f"error: config file {exc.filename} line {exc.lineno}: {exc.msg}", file=sys.stderr)
    except flags.Error as exc:
        line = _last_error_line(exc)
        if "Error whilst parsing config file" in str(exc):  # the file's get_config(ARG) refused ARG
            print(f"error: {re.sub(r'^[A-Za-z_.]*Error: ', '', line)}", file=sys.stderr)
        else:
            print(f"error: {line} (--help lists the flags)", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}; every input is a --flag "
              f"(--help lists them)", file=sys.stderr)
        sys.exit(2)
    from twister_jax import quiet
    quiet.quiet_libraries(keep_absl_verbosity=FLAGS["verbosity"].present)
    try:
        from twister_jax import preflight
        config = resolve_config(FLAGS.config)
        # Path and config checks first; the batch-vs-devices check initialises jax's backend, which
        # multi-host must do after jax.distributed.initialize().
        preflight.check_run(config, FLAGS.workdir, devices=not FLAGS.multihost)
        if FLAGS.multihost:
            import jax
            jax.distributed.initialize()
            preflight.check_run(config, FLAGS.workdir)
    except ValueError as exc:  # includes IncompatibleCheckpointError and preflight.PreflightError
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    from twister_jax import checkpoint, loop
    try:
        result = loop.run(config, FLAGS.workdir, allow_empty_replay=FLAGS.allow_empty_replay)
    except (checkpoint.ReplayUnavailableError, checkpoint.IncompatibleCheckpointError,
            checkpoint.NoCheckpointError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)  # found while restoring; nothing was lost
        sys.exit(2)
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
