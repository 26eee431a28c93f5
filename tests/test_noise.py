"""Library noise (issue 13): a damaged checkpoint's fallback warning is not buried under library tracebacks.

When a checkpoint's array files are damaged, the TensorStore reads fail, Orbax closes its asyncio
loop, and every pending chunk callback then prints a 5-line 'RuntimeError: Event loop is closed'
traceback (hundreds of lines for 50 small arrays, thousands for a full-size model), plus Orbax's
own warnings. `twister_jax.quiet.quiet_libraries()` (called by the train and evaluate programs)
keeps one line of each and lets the program's own warning through.
"""
import logging
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# The same restore path as checkpoint.Checkpointer (a CheckpointManager with a Composite of
# StandardSave/StandardRestore items, the newest damaged, the previous one read instead), run as a
# program the way the CLI runs: absl's app.run, absl's log handler, quiet_libraries() in main.
_PROGRAM = r'''
import glob, logging, os, shutil, sys
from absl import app

def main(argv):
    if os.environ.get("QUIET") == "1":
        from twister_jax import quiet
        quiet.quiet_libraries()
    else:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)
    import jax, numpy as np, orbax.checkpoint as ocp
    directory = os.path.abspath("checkpoints")
    tree = {f"w{i}": jax.numpy.arange(1000, dtype=jax.numpy.float32).reshape(10, 100) + i for i in range(50)}
    mgr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(max_to_keep=3))
    for step in (20, 40):
        mgr.save(step, args=ocp.args.Composite(train=ocp.args.StandardSave(tree)))
    mgr.wait_until_finished()
    mgr.close()
    for path in glob.glob(f"{directory}/40/train/**/d/*", recursive=True):  # garbage of the same length
        size = os.path.getsize(path)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
    mgr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
    restored = None
    for step in (40, 20):
        try:
            restored = mgr.restore(step, args=ocp.args.Composite(train=ocp.args.StandardRestore(abstract)))
            break
        except Exception as exc:
            logging.getLogger("twister_jax.checkpoint").warning(
                "checkpoint %s is unreadable (%s); falling back to the previous one", step, type(exc).__name__)
    print("restored", step, float(restored.train["w3"][0, 0]), flush=True)

app.run(main)
'''


def _run_program(tmp_path, quiet: bool):
    env = dict(os.environ, QUIET="1" if quiet else "0",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    (tmp_path / "program.py").write_text(_PROGRAM)
    return subprocess.run([sys.executable, "program.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_damaged_checkpoint_fallback_warning_is_not_buried(tmp_path):
    r = _run_program(tmp_path, quiet=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "restored 20 3.0"
    lines = r.stderr.strip().splitlines()
    assert len(lines) < 30, f"{len(lines)} stderr lines:\n" + "\n".join(lines[:60])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "read_only" not in r.stderr  # Orbax's warnings for every read-only manager (always printed)
    fallback = [ln for ln in lines if "checkpoint 40 is unreadable" in ln and "falling back" in ln]
    assert len(fallback) == 1, r.stderr


def test_filter_passes_our_records_and_other_libraries():
    from twister_jax import quiet

    f = quiet.LibraryNoiseFilter()

    def record(name, level, msg, path="/x/y.py", exc_info=None):
        return logging.LogRecord(name, level, path, 1, msg, None, exc_info)

    assert f.filter(record("twister_jax.checkpoint", logging.WARNING, "checkpoint 40 is unreadable"))
    assert f.filter(record("jax._src.xla_bridge", logging.WARNING, "An NVIDIA GPU may be present"))
    assert not f.filter(record("absl", logging.WARNING, "read only", "/site-packages/orbax/checkpoint/m.py"))
    assert not f.filter(record("asyncio", logging.INFO, "poll took 2s"))
    try:
        raise RuntimeError("Event loop is closed\nmore")
    except RuntimeError:
        exc_info = sys.exc_info()
    err = record("asyncio", logging.ERROR, "Task exception was never retrieved\nfuture: <Task ...>", exc_info=exc_info)
    assert f.filter(err) and err.exc_info is None and "\n" not in err.getMessage()
    assert "Task exception was never retrieved" in err.getMessage() and "Event loop is closed" in err.getMessage()
    again = record("asyncio", logging.ERROR, "Task exception was never retrieved\nfuture: <Task 2>", exc_info=exc_info)
    assert not f.filter(again)  # each distinct line once


@pytest.mark.slow
def test_train_cli_resume_from_damaged_checkpoint_is_quiet(tmp_path):
    """The whole story through the program (minutes on CPU): train, damage the newest step, resume."""
    workdir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    base = [sys.executable, "-m", "twister_jax.train", f"--config={REPO}/configs/tiny.py:fake",
            f"--workdir={workdir}", "--config.checkpoint_every=20", "--config.eval_every=40",
            "--config.log_every=10", "--config.prefill_windows=4"]
    r = subprocess.run(base + ["--config.num_train_steps=40"], env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    (workdir / "done.json").unlink()
    damaged = list((workdir / "checkpoints" / "40" / "train").glob("**/d/*"))
    assert damaged
    for path in damaged:
        path.write_bytes(os.urandom(path.stat().st_size))
    r = subprocess.run(base + ["--config.num_train_steps=41"], env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) < 30, f"{len(lines)} stderr lines:\n" + "\n".join(lines[:60])
    assert "Traceback" not in r.stderr
    assert any("is unreadable" in ln and "falling back" in ln for ln in lines), r.stderr
