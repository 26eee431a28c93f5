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

import logging
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


class LibraryNoiseFilter(logging.Filter):
    """Drops checkpoint-stack library records below ERROR; ERRORs become one line, each shown once."""

    def __init__(self):
        super().__init__("")
        self._seen = set()
        self._lock = threading.Lock()

    @staticmethod
    def is_library(record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] in _OURS:
            return False
        path = (record.pathname or "").replace("\\", "/")
        return record.name.split(".")[0] in _NOISY_NAMES or any(p in path for p in _NOISY_PATHS)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.is_library(record):
            return True
        if record.levelno < logging.ERROR:
            return False
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed library record must not break logging
            message = str(record.msg)
        line = _first_line(message)
        if record.exc_info and record.exc_info[1] is not None:
            line = f"{line} ({type(record.exc_info[1]).__name__}: {_first_line(record.exc_info[1])})"
        with self._lock:
            if line in self._seen:
                return False
            self._seen.add(line)
        record.msg, record.args = f"{line} [library traceback hidden; --verbosity=0 shows it]", None
        record.exc_info = record.exc_text = record.stack_info = None
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


_UNRAISABLE_SEEN = set()


def _unraisable_hook(unraisable) -> None:
    """One line per distinct exception ignored in a finaliser or a library callback; repeats hidden.

    A failed TensorStore read of a damaged checkpoint leaves one callback per array chunk posting
    to an asyncio loop Orbax has already closed: each printed a 5-line 'Event loop is closed'
    traceback (thousands of lines for a full-size model).
    """
    line = _one_line_exception(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    where = "" if unraisable.object is None else f" in {_first_line(repr(unraisable.object))}"
    with _FILTER._lock:  # pylint: disable=protected-access
        if line in _UNRAISABLE_SEEN:
            return
        _UNRAISABLE_SEEN.add(line)
    print(f"warning: exception ignored{where}: {line} [repeats and traceback hidden; --verbosity=0 shows "
          f"them]", file=sys.stderr, flush=True)


_FILTER = LibraryNoiseFilter()


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
