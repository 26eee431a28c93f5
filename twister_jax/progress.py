"""Progress display: a tqdm bar on a terminal, plain periodic lines otherwise (logs, CI, notebooks).

Shown: gradient steps (the bar), env steps, gradient steps per second, ETA and the last evaluation
score. Plain mode prints one line at most every `interval` seconds (and at the end), so a log file
stays small.
"""
from __future__ import annotations

import sys
import time
from typing import Optional


class Progress:
    """Args:
      total: gradient steps of the whole run.
      initial: gradient steps already done (resume).
      tty: force the mode (default: whether stderr is a terminal).
      interval: seconds between plain lines.
    """

    def __init__(self, total: int, initial: int = 0, *, tty: Optional[bool] = None, interval: float = 30.0,
                 stream=None, desc: str = "train"):
        self.total, self.n = int(total), int(initial)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self.desc = desc
        self.fields: dict = {}
        self._t0, self._n0, self._env0 = time.time(), self.n, None
        self._last_print = 0.0
        self._bar = None
        if self.tty:
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=self.total, initial=self.n, desc=desc, file=self.stream,
                                 dynamic_ncols=True, smoothing=0.05)
            except ImportError:
                self.tty = False

    def rate(self) -> float:
        dt = time.time() - self._t0
        return (self.n - self._n0) / dt if dt > 0 else 0.0

    def restart_clock(self) -> None:
        """Measures the rates from now on (call when gradient steps begin, after pre-fill)."""
        self._t0, self._n0, self._env0 = time.time(), self.n, self.fields.get("env_steps")

    def update(self, n: int, **fields) -> None:
        """Sets the step count to `n` and the displayed fields (e.g. env_steps, score, phase).

        Cheap enough to call every step: the bar redraws at most every second and a plain line is
        printed at most every `interval` seconds, also while `n` does not move (pre-fill)."""
        self.fields.update({k: v for k, v in fields.items() if v is not None})
        delta, self.n = n - self.n, n
        now = time.time()
        if self._bar is not None:
            if delta:
                self._bar.update(delta)
            if now - self._last_print >= 1.0:
                self._bar.set_postfix(self._postfix(), refresh=True)
                self._last_print = now
        elif now - self._last_print >= self.interval:
            self.print_line()

    def _postfix(self) -> dict:
        out = {}
        for k, v in self.fields.items():
            out[k] = f"{v:.4g}" if isinstance(v, float) else v
        return out

    def print_line(self) -> None:
        rate = self.rate()
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        extra = " ".join(f"{k}={v}" for k, v in self._postfix().items())
        dt = time.time() - self._t0
        if self._env0 is not None and dt > 0:
            extra += f" env_steps/s={(self.fields.get('env_steps', self._env0) - self._env0) / dt:.3g}"
        print(f"[{self.desc}] step {self.n}/{self.total} ({100.0 * self.n / max(self.total, 1):.1f}%) "
              f"{rate:.3g} steps/s eta {_fmt_time(eta)} {extra}".rstrip(), file=self.stream, flush=True)
        self._last_print = time.time()

    def write(self, line: str) -> None:
        """A message that does not break the bar."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self.print_line()


def _fmt_time(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"
