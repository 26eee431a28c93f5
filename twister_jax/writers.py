"""Metric writers: TensorBoard (tensorboardX), JSONL, console, and a fan-out. No jax import.

One interface, `MetricWriter`:

* `write_scalars(step, scalars)`: a dict of name -> number (NumPy scalars and 0-d / 1-element arrays
  are accepted). The JSONL writer also keeps non-numeric JSON values (strings, lists such as the
  evaluation `returns`); TensorBoard and the console skip them.
* `write_images(step, images)`: name -> uint8 image, (H, W, C) or a batch (N, H, W, C) shown as one
  grid (float arrays are taken to be in [0, 1]).
* `write_videos(step, videos)`: name -> uint8 video (T, H, W, C), or (N, T, H, W, C) tiled per frame.
* `flush()`, `close()`.

Videos reach TensorBoard as animated GIFs in an image summary, the format tensorboardX's own
`add_video` writes (TensorBoard's image dashboard plays them). tensorboardX encodes GIFs with
moviepy, which we do not depend on; we encode them with Pillow instead (tensorboardX already needs
Pillow for images). Without Pillow, images and videos are skipped with one warning.

The run directory (docs/interfaces.md §6) puts `metrics.jsonl` and `tb/` under the workdir. On resume both
drop what was logged after the restored checkpoint: the JSONL writer rewrites its file without rows
whose `step` is after `resume_step`; the TensorBoard writer passes `purge_step = resume_step + 1`
to tensorboardX, which makes TensorBoard discard older events with a step at or past it.
"""
from __future__ import annotations

import io
import json
import logging
import math
import numbers
import os
import pathlib
import sys
from typing import Any, Mapping, Optional, Sequence, TextIO

import numpy as np

from twister_jax.files import atomic_write

log = logging.getLogger(__name__)


def _to_json_value(v: Any) -> Any:
    """NumPy scalars / small arrays -> Python values JSON can write."""
    if isinstance(v, np.ndarray):
        return v.item() if v.size == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_to_json_value(x) for x in v]
    if hasattr(v, "__array__") and not isinstance(v, (str, bytes)):  # e.g. a device array
        return _to_json_value(np.asarray(v))
    return v


def _numeric(scalars: Mapping[str, Any]) -> dict:
    """The entries of `scalars` that are single numbers, as Python floats/ints."""
    out = {}
    for k, v in scalars.items():
        v = _to_json_value(v)
        if isinstance(v, bool):
            out[k] = int(v)
        elif isinstance(v, numbers.Number):
            out[k] = v
    return out


def _as_uint8(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = np.clip(np.round(x.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return x


def tile(images: np.ndarray, cols: Optional[int] = None) -> np.ndarray:
    """(N, H, W, C) -> one (rows*H, cols*W, C) grid, row-major, blank cells black."""
    n, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), images.dtype)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = images[i]
    return grid


def _image_hwc(x) -> np.ndarray:
    x = _as_uint8(x)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim == 4:
        x = tile(x)
    if x.ndim != 3:
        raise ValueError(f"an image must be (H, W, C) or (N, H, W, C), got shape {x.shape}")
    return x


def _video_thwc(x) -> np.ndarray:
    x = _as_uint8(x)
    if x.ndim == 5:  # (N, T, H, W, C): tile the N videos frame by frame
        x = np.stack([tile(x[:, t]) for t in range(x.shape[1])])
    if x.ndim != 4:
        raise ValueError(f"a video must be (T, H, W, C) or (N, T, H, W, C), got shape {x.shape}")
    return x


def encode_gif(video: np.ndarray, fps: float = 10.0) -> bytes:
    """(T, H, W, C) uint8 -> animated GIF bytes (Pillow), looping forever."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    if video.shape[-1] == 1:
        video = np.repeat(video, 3, axis=-1)
    frames = [Image.fromarray(np.ascontiguousarray(f[..., :3])) for f in video]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                   duration=max(1, int(round(1000.0 / fps))), loop=0)
    return buf.getvalue()


class MetricWriter:
    """The interface every writer implements; the defaults do nothing."""

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        pass

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        pass

    def write_videos(self, step: int, videos: Mapping[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class JsonlWriter(MetricWriter):
    """One JSON object per `write_scalars` call: `{"step": step, **scalars}`, one line each.

    Args:
      path: the file (e.g. `<workdir>/metrics.jsonl`); parent folders are created.
      resume_step: None starts a new file (an existing one is replaced). An int keeps the existing
        rows with `step <= resume_step`, rewriting the file atomically, then appends. A line that
        is not a JSON object (a disk error, or a last line cut by a kill) is not dropped silently:
        it is appended to `<path>.damaged` (one JSON object per line: `{"line", "torn_last_line",
        "text"}`, the line number in the file as it was, the bytes as text with undecodable bytes
        written `\\xNN`) and one warning names the file and the line numbers.
    """

    def __init__(self, path, resume_step: Optional[int] = None):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keep = []
        if resume_step is not None and self.path.exists():
            rows, damaged = _parse_jsonl(self.path.read_bytes())
            keep = [line for row, line in rows if row.get("step", 0) <= resume_step]
            if damaged:
                _keep_aside(self.path, damaged)
        atomic_write(self.path, "".join(line + "\n" for line in keep))
        self._file = open(self.path, "a", encoding="utf-8")

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        row = {"step": int(step)}
        row.update({k: _to_json_value(v) for k, v in scalars.items()})
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


def _parse_jsonl(data: bytes):
    """(rows, damaged): rows = [(dict, line text)]; damaged = [(line number, bytes, is torn last line)].

    Blank lines are neither. A last line without its newline that parses is a complete row.
    """
    lines = data.split(b"\n")
    last_complete = lines[-1] == b""
    if last_complete:
        lines.pop()
    rows, damaged = [], []
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
            row = json.loads(text)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError
            row = None
        if isinstance(row, dict):
            rows.append((row, text))
        else:
            damaged.append((i, raw, i == len(lines) and not last_complete))
    return rows, damaged


def _keep_aside(path: pathlib.Path, damaged) -> None:
    """Appends `damaged` lines of `path` to `<path>.damaged` (fsynced) and warns once naming them."""
    aside = path.with_name(path.name + ".damaged")
    with open(aside, "a", encoding="utf-8") as f:
        for i, raw, torn in damaged:
            f.write(json.dumps({"line": i, "torn_last_line": torn,
                                "text": raw.decode("utf-8", "backslashreplace")}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    numbers = [f"{i} (torn last line)" if torn else str(i) for i, _, torn in damaged]
    shown = ", ".join(numbers[:20]) + (f", ... ({len(numbers) - 20} more)" if len(numbers) > 20 else "")
    log.warning("%s: %d damaged line%s (line %s) not JSON rows; kept aside in %s",
                path, len(numbers), "" if len(numbers) == 1 else "s", shown, aside)


def read_jsonl(path) -> list:
    """All complete rows of a JSONL file (a partial last line is skipped)."""
    rows = []
    for line in pathlib.Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class TensorBoardWriter(MetricWriter):
    """TensorBoard event files via tensorboardX (imports neither TensorFlow nor PyTorch).

    Args:
      logdir: the event folder (e.g. `<workdir>/tb`).
      resume_step: when resuming, events after this step are purged (tensorboardX `purge_step`).
      fps: frame rate of the GIFs `write_videos` writes.
      flush_secs: how often tensorboardX flushes on its own.
    """

    def __init__(self, logdir, resume_step: Optional[int] = None, fps: float = 10.0, flush_secs: int = 30):
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

        self.fps = fps
        purge = None if resume_step is None else int(resume_step) + 1
        self._writer = SummaryWriter(str(logdir), purge_step=purge, flush_secs=flush_secs)
        self._warned = False

    def _pillow(self) -> bool:
        try:
            import PIL  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
            return True
        except ImportError:
            if not self._warned:
                log.warning("Pillow is not installed: images and videos are not written to TensorBoard")
                self._warned = True
            return False

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for k, v in _numeric(scalars).items():
            self._writer.add_scalar(k, float(v), int(step))

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        if not self._pillow():
            return
        for k, v in images.items():
            self._writer.add_image(k, _image_hwc(v), int(step), dataformats="HWC")

    def write_videos(self, step: int, videos: Mapping[str, Any]) -> None:
        if not self._pillow():
            return
        from tensorboardX.proto.summary_pb2 import Summary  # pylint: disable=import-outside-toplevel

        for k, v in videos.items():
            video = _video_thwc(v)
            _, h, w, c = video.shape
            image = Summary.Image(height=h, width=w, colorspace=max(c, 3),
                                  encoded_image_string=encode_gif(video, self.fps))
            self._writer._get_file_writer().add_summary(  # pylint: disable=protected-access
                Summary(value=[Summary.Value(tag=k, image=image)]), int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class ConsoleWriter(MetricWriter):
    """One short line per `write_scalars` call: `step 1200 | loss 0.1234 | ...`.

    Args:
      keys: the scalar names to show, in this order (None: every numeric scalar, sorted).
      stream: where to print (default sys.stdout).
    """

    def __init__(self, keys: Optional[Sequence[str]] = None, stream: Optional[TextIO] = None):
        self.keys = list(keys) if keys is not None else None
        self.stream = stream

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        nums = _numeric(scalars)
        keys = [k for k in self.keys if k in nums] if self.keys is not None else sorted(nums)
        parts = [f"step {int(step)}"]
        for k in keys:
            v = nums[k]
            parts.append(f"{k} {v}" if isinstance(v, int) else f"{k} {v:.4g}")
        print(" | ".join(parts), file=self.stream or sys.stdout, flush=True)


class MultiWriter(MetricWriter):
    """Forwards every call to each of `writers`, in order."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self.writers = list(writers)

    def write_scalars(self, step, scalars):
        for w in self.writers:
            w.write_scalars(step, scalars)

    def write_images(self, step, images):
        for w in self.writers:
            w.write_images(step, images)

    def write_videos(self, step, videos):
        for w in self.writers:
            w.write_videos(step, videos)

    def flush(self):
        for w in self.writers:
            w.flush()

    def close(self):
        for w in self.writers:
            w.close()
