"""Keeps library log noise off the console, so the program's own messages stay readable (issue 13).

`quiet_libraries()` is called by the command-line programs (`twister_jax.train`, `twister_jax.evaluate`)
after flag parsing; library code and tests that import the package are not affected.

What it does:

* absl verbosity WARNING (Orbax logs every save at INFO), unless `--verbosity` was given;
* on the root logger's handlers (absl's, under `app.run`), a filter for the records of the checkpoint
  stack -- Orbax and etils (which log through absl), TensorStore, asyncio (Orbax runs its I/O in
  asyncio loops; "Task exception was never retrieved" carries a whole traceback): below ERROR they
  are dropped; an ERROR is shown as its first line, without the traceback, and each distinct line
  once. When a checkpoint is damaged the checkpoint module's own warning (logger
  `twister_jax.checkpoint`: "... is unreadable ... falling back to the previous one") says what
  happened; the library's tracebacks of the same failure repeated it per array.
* an uncaught exception in a background thread (`threading.excepthook`) prints one line (type,
  message, innermost frame) instead of a traceback; an exception ignored in a finaliser or a
  library callback (`sys.unraisablehook`) likewise, once per distinct line. This is the bulk of
  it: when a damaged checkpoint fails to read, TensorStore's pending callbacks post to the asyncio
  loop Orbax has already closed, one 'RuntimeError: Event loop is closed' traceback per array chunk
  (about 300 stderr lines for 50 small arrays; thousands for a full-size model).

The program's own loggers (`twister_jax.*`, `__main__`) and every other library (jax's backend
messages, for one) pass untouched. `--verbosity=0` (or any `--verbosity`) turns all of this off and
shows the libraries' messages in full.
"""
from __future__ import annotations

import atexit
import logging
import re
import sys
import threading

_NOISY_NAMES = ("asyncio", "orbax", "tensorstore", "etils")
_NOISY_PATHS = ("/orbax/", "/tensorstore/", "/etils/", "/asyncio/")
_OURS = ("twister_jax", "__main__")
_MAX_CHARS = 300


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= _MAX_CHARS else line[:_MAX_CHARS] + " ..."
    return ""


_SEEN = set()
_HIDDEN = [0]
_LOCK = threading.Lock()


def _strip_addresses(text: str) -> str:
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _note_first(key) -> bool:
    """True the first time `key` is seen; later times count as hidden."""
    with _LOCK:
        if key in _SEEN:
            _HIDDEN[0] += 1
            return False
        _SEEN.add(key)
        return True


class LibraryNoiseFilter(logging.Filter):
    """Drops checkpoint-stack library records below ERROR; ERRORs become one line, each shown once."""

    @staticmethod
    def is_library(record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] in _OURS:
            return False
        path = (record.pathname or "").replace("\\", "/")
        return record.name.split(".")[0] in _NOISY_NAMES or any(p in path for p in _NOISY_PATHS)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_twister_quiet", False):  # already shortened (logger, then handler)
            return True
        if not self.is_library(record):
            return True
        if record.levelno < logging.ERROR:
            return False
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed library record must not break logging
            message = str(record.msg)
        line = _first_line(message)
        exc = record.exc_info[1] if record.exc_info else None
        # One per kind: "Future exception was never retrieved" comes once per array, each with its
        # own array index in the exception text.
        if not _note_first((record.name, _strip_addresses(line), type(exc).__name__ if exc is not None else "")):
            return False
        if exc is not None:
            line = f"{line} ({type(exc).__name__}: {_first_line(exc)})"
        record.msg, record.args = f"{line} [repeats and traceback hidden; --verbosity=0 shows them]", None
        record.exc_info = record.exc_text = record.stack_info = None
        record._twister_quiet = True  # pylint: disable=protected-access
        return True


def _one_line_exception(exc_type, exc, tb) -> str:
    where = ""
    while tb is not None:
        where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"{getattr(exc_type, '__name__', exc_type)}: {_first_line(exc)}{where}"


def _thread_hook(args) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    print(f"error in background thread {name}: {_one_line_exception(args.exc_type, args.exc_value, args.exc_traceback)}"
          f" [traceback hidden; --verbosity=0 shows it]", file=sys.stderr, flush=True)


def _unraisable_hook(unraisable) -> None:
    """One line per kind of exception ignored in a finaliser or a library callback; repeats hidden.

    A failed TensorStore read of a damaged checkpoint leaves one coroutine or callback per array
    chunk whose exception nobody retrieves; each printed a traceback (thousands of lines for a
    full-size model). The kind is the exception type, where it was raised and what ignored it.
    """
    tb = unraisable.exc_traceback
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
    what = "" if unraisable.object is None else _strip_addresses(_first_line(repr(unraisable.object)))
    if not _note_first(("unraisable", getattr(unraisable.exc_type, "__name__", ""), where, what)):
        return
    line = _one_line_exception(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    print(f"warning: exception ignored{' in ' + what if what else ''}: {line} [repeats and traceback "
          f"hidden; --verbosity=0 shows them]", file=sys.stderr, flush=True)


def _summary() -> None:
    if _HIDDEN[0]:
        print(f"({_HIDDEN[0]} more library messages like the ones above hidden; --verbosity=0 shows them)",
              file=sys.stderr, flush=True)


_FILTER = LibraryNoiseFilter()
_INSTALLED = []


def quiet_libraries(keep_absl_verbosity: bool = False) -> None:
    """Installs the filters and hooks described in the module docstring (idempotent).

    Args:
      keep_absl_verbosity: the user passed `--verbosity`: change nothing, show everything.
    """
    if keep_absl_verbosity:
        return
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel

    absl_logging.set_verbosity(absl_logging.WARNING)
    root = logging.getLogger()
    handlers = list(root.handlers) or [logging.lastResort]
    for handler in handlers:
        if handler is not None and _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    for name in _NOISY_NAMES:  # also for records that reach a handler added later
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    threading.excepthook = _thread_hook
    sys.unraisablehook = _unraisable_hook
    if not _INSTALLED:
        atexit.register(_summary)
        _INSTALLED.append(True)
