"""Replay buffer (docs/original.md §2): NumPy only, no jax import.

Semantics (docs/original.md §2.1-2.3):

* One **stream** per env, never cut at episode ends. A record is one observation with the action
  that led to it: `(image o_t, action a_{t-1}, reward r_t, is_first_t, is_terminal_t)`. The caller
  appends the reset record (zero action, reward 0) to the same stream; the buffer stores what it is
  given and does not zero anything.
* Every contiguous window of `seq_len` records of every stream is a stored window: once a stream has
  `seq_len` records, each new record creates one window (the last `seq_len` records). Windows may
  cross episode boundaries; `is_first` marks them.
* Capacity is counted in windows; when full, the oldest window (over all streams, in creation order)
  is evicted (FIFO). Records that no stored window needs any more are freed block-wise.
* Sampling: each batch entry picks one stored window uniformly at random, with replacement, from a
  `numpy.random.Generator` (PCG64) seeded at construction.

Storage (`twister_jax.replay_stream`): frames are stored once. Each stream keeps its records in blocks of `block_size` records
(allocated as the stream grows, freed once every record in them is evicted), and a window is the
pair `(stream, end index)`, kept in a ring of `capacity_windows` slots that grows by doubling.

Frame slots (for a device-side copy of the frames, `twister_jax.frame_store`): every record gets a
*serial*, its position in this buffer's add order (restarting from 0, in add order, over the records
a restore loads). Record `s` lives in frame slot `s % frame_slots`, where `frame_slots` bounds the
records any stored window can still need (`capacity_windows + num_streams * (4 * seq_len + 4)`), so
a slot is reused only once no stored window needs its record; `sample(images=False)` checks this and
raises rather than return a slot that was reused. With `track_frames` set, `add` keeps each new
record's (serial, image) until `take_new_frames()`; `live_frames()` lists every record still needed.

Persistence (docs/interfaces.md §3 "Replay persistence"; file names and directory checks in
`twister_jax/replay_files.py`), files in the replay directory:

* `chunk_<step:012d>.npz`: the records added since the previous save, in add order, with their
  stream and per-stream record index (`stream`, `index`, `image`, `action`, `reward`, `is_first`,
  `is_terminal`). Never rewritten by later saves.
* `state_<step:012d>.json`: written last; its presence means step `step` is complete. Holds the
  buffer metadata (`state_dict()`: sizes, per-stream record and eviction counts, window count,
  sampler RNG state) and the list of chunks this step is built from.

Both are written to a temporary file, flushed, fsynced and renamed, so a kill leaves at most a
stray temporary file. `restore(dir, step)` reads `state_<step>.json` and exactly the chunks it lists
(chunks written after `step` are ignored), and raises if one is missing or damaged, so the
checkpointer can fall back to an older step; a failed restore leaves the buffer unchanged. The
first save after a restore to step S deletes the files tagged after S (an abandoned future: the
checkpointer only restores S when the newer steps are unreadable or absent), then writes its own;
the first save of a buffer that was never restored starts the directory afresh (deletes every
state and chunk file in it). Chunks whose records are all evicted drop out of later state files
(they stay on disk for the older states that list them).

Choices not in the original (docs/original.md; the original keeps the live streams out of its checkpoint and restarts
them on resume; we save them, so a resumed run continues exactly): the live stream tails are saved
and restored, and so is the sampler RNG. The original samples with Python's `random.choice`; we use
NumPy's `Generator.integers`, the same distribution.
"""
from __future__ import annotations

import itertools
import json
import pathlib
from typing import Optional, Sequence

import numpy as np

from twister_jax import replay_files
from twister_jax.replay_stream import Stream, aligned_empty, unpack_raw
from twister_jax.files import atomic_write

_FORMAT_VERSION = 1
_GENERATIONS = itertools.count(1)  # a fresh number for every storage a buffer starts or restores


class ReplayBuffer:
    """Uniform replay over every window of `seq_len` consecutive records of every stream.

    Args:
      capacity_windows: maximum number of stored windows (FIFO eviction beyond it), docs/original.md §2.2.
      seq_len: window length T (the original: 64, docs/original.md §2.2).
      num_streams: number of envs (one stream each).
      image_shape: (H, W, C) of one uint8 frame.
      action_dim: A, length of the stored action vector (one-hot for Atari).
      seed: seed of the sampler's `numpy.random.Generator`.
      block_size: records per storage block (memory grows and is freed in these units).
    """

    def __init__(self, capacity_windows: int, seq_len: int, num_streams: int,
                 image_shape: Sequence[int] = (64, 64, 3), action_dim: int = 1, seed: int = 0,
                 block_size: int = 1024):
        if capacity_windows <= 0 or seq_len <= 0 or num_streams <= 0 or action_dim <= 0 or block_size <= 0:
            raise ValueError("capacity_windows, seq_len, num_streams, action_dim and block_size must be positive, "
                             f"got {capacity_windows}, {seq_len}, {num_streams}, {action_dim}, {block_size}")
        self.capacity = int(capacity_windows)
        self.seq_len = int(seq_len)
        self.num_streams = int(num_streams)
        self.image_shape = tuple(int(x) for x in image_shape)
        self.action_dim = int(action_dim)
        self.seed = int(seed)
        self.block_size = int(block_size)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self._reset_storage()
        self._last_step: Optional[int] = None  # step of the last save / restore in this lineage
        self._chunks: list = []  # chunks of this lineage: {"step", "file", "max_index": [per stream]}

    def _reset_storage(self) -> None:
        self._streams = [Stream(self.block_size, self.image_shape, self.action_dim)
                         for _ in range(self.num_streams)]
        self._evicted = np.zeros(self.num_streams, np.int64)  # windows evicted per stream
        self._total_windows = 0  # windows ever created
        self._num_windows = 0
        self._win_stream = np.zeros(min(self.capacity, 1024), np.int32)
        self._win_end = np.zeros(min(self.capacity, 1024), np.int64)
        self._saved = np.zeros(self.num_streams, np.int64)  # records per stream already saved
        self._pending: list = []  # stream of each record added since the last save, in order
        self._serial = 0  # serial of the next record (frame slots, see the module docstring)
        self._new_frames: list = []  # (serial, image view) of records added since take_new_frames()
        self.generation = next(_GENERATIONS)
        self.track_frames = False

    @property
    def frame_slots(self) -> int:
        """Frame slots a device-side copy of the frames needs (see the module docstring)."""
        return self.capacity + self.num_streams * (4 * self.seq_len + 4)

    # --------------------------------------------------------------------------------- adding
    @property
    def num_windows(self) -> int:
        """Number of stored windows (what `capacity_windows` and the pre-fill count)."""
        return self._num_windows

    @property
    def num_records(self) -> int:
        """Records ever appended, over all streams."""
        return int(sum(s.count for s in self._streams))

    def stream_length(self, stream: int) -> int:
        return self._streams[stream].count

    def add(self, stream: int, image, action, reward, is_first, is_terminal) -> None:
        """Appends one record to `stream`; creates a window once the stream holds `seq_len` records.

        Args:
          stream: env index in [0, num_streams).
          image: uint8 (H, W, C) observation o_t.
          action: float32 (A,) action that led to o_t (zero on reset records, by the caller).
          reward: reward of the transition into o_t (0 on reset records).
          is_first: o_t is an episode's reset observation.
          is_terminal: o_t is terminal.
        """
        image = np.asarray(image)
        if image.shape != self.image_shape or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 {self.image_shape}, got {image.dtype} {image.shape}")
        action = np.asarray(action, np.float32).reshape(-1)
        if action.shape != (self.action_dim,):
            raise ValueError(f"action must have {self.action_dim} entries, got shape {action.shape}")
        st = self._streams[stream]
        i = st.count
        stored = st.put(i, image, action, reward, is_first, is_terminal, self._serial)
        if self.track_frames:
            self._new_frames.append((self._serial, stored))
        self._serial += 1
        st.count = i + 1
        self._pending.append(stream)
        if i >= self.seq_len - 1:
            self._add_window(stream, i)

    def add_batch(self, image, action, reward, is_first, is_terminal) -> None:
        """Appends one record to every stream (stream order 0..N-1); arrays have leading dim N."""
        for s in range(self.num_streams):
            self.add(s, image[s], action[s], reward[s], is_first[s], is_terminal[s])

    def _grow_windows(self) -> None:
        n = min(self.capacity, 2 * len(self._win_stream))
        self._win_stream = np.concatenate([self._win_stream, np.zeros(n - len(self._win_stream), np.int32)])
        self._win_end = np.concatenate([self._win_end, np.zeros(n - len(self._win_end), np.int64)])

    def _add_window(self, stream: int, end: int) -> None:
        n = self._total_windows
        if self._num_windows == self.capacity:  # evict the oldest window
            old = n - self.capacity
            s_old = int(self._win_stream[old % self.capacity])
            self._evicted[s_old] += 1
            self._streams[s_old].free_below(int(self._evicted[s_old]))
            self._num_windows -= 1
        elif n >= len(self._win_stream):
            self._grow_windows()
        slot = n % self.capacity
        self._win_stream[slot] = stream
        self._win_end[slot] = end
        self._total_windows = n + 1
        self._num_windows += 1

    # ------------------------------------------------------------------------------- sampling
    def sample(self, batch_size: int, *, images: bool = True) -> dict:
        """Samples `batch_size` windows uniformly with replacement (docs/original.md §2.3).

        Args:
          images: False: instead of `image`, return `frame_slot` int32 (B, T), the frame slot of each
            record (for a device-side copy of the frames). The same windows are drawn either way.
        Returns:
          The Batch of docs/interfaces.md §3: `image` uint8 (B, T, H, W, C), `action` float32 (B, T, A),
          `reward` float32 (B, T), `is_first` bool (B, T), `is_terminal` bool (B, T).
        Raises:
          RuntimeError: (images=False) a sampled record's frame slot was reused (cannot happen while
            `frame_slots` bounds the records still needed; a guard, never a silent wrong frame).
        """
        if self._num_windows == 0:
            raise ValueError("the replay buffer holds no window yet")
        idx = self._rng.integers(0, self._num_windows, size=batch_size)
        slots = (self._total_windows - self._num_windows + idx) % self.capacity
        B, T = batch_size, self.seq_len
        # with images, 64-byte aligned: on CPU the device takes them without a copy (12.6 MB of
        # frames per Atari batch); elsewhere alignment costs nothing. Without, plain (small) arrays.
        empty = aligned_empty if images else np.empty
        dtype = self._streams[0].rec_dtype
        raw = np.empty((B, T, dtype.itemsize), np.uint8)
        image = aligned_empty((B, T) + self.image_shape, np.uint8) if images else None
        for b, (s, end) in enumerate(zip(self._win_stream[slots].tolist(), self._win_end[slots].tolist())):
            self._streams[s].copy_window(end - T + 1, T, raw, image, b)
        batch = unpack_raw(raw, dtype, empty)
        serial = batch.pop("serial")
        if images:
            batch["image"] = image
        else:
            if self._serial - 1 - int(serial.min()) >= self.frame_slots:
                raise RuntimeError(f"replay: a sampled record (serial {int(serial.min())}) lies more than "
                                   f"frame_slots={self.frame_slots} records back; its frame slot was reused")
            batch["frame_slot"] = (serial % self.frame_slots).astype(np.int32)
        return batch

    def window(self, k: int) -> tuple[int, int]:
        """(stream, end index) of the k-th oldest stored window (for tests and inspection)."""
        if not 0 <= k < self._num_windows:
            raise IndexError(k)
        slot = (self._total_windows - self._num_windows + k) % self.capacity
        return int(self._win_stream[slot]), int(self._win_end[slot])

    # --------------------------------------------------------------------------- frame slots
    def take_new_frames(self) -> tuple[np.ndarray, list]:
        """(serials int64 (K,), K images) of the records added since the last call while
        `track_frames` was set, in add order; clears the list."""
        new, self._new_frames = self._new_frames, []
        return np.asarray([s for s, _ in new], np.int64), [img for _, img in new]

    def live_frames(self, chunk: int = 1024):
        """Yields (serials int64 (K,), images uint8 (K, H, W, C)) for every record a stored window
        can still need (per stream, from its oldest stored window's first record), in chunks of at
        most `chunk` records, in increasing serial order within each stream."""
        for s, st in enumerate(self._streams):
            lo = int(self._evicted[s])
            for start in range(lo, st.count, chunk):
                part = st.gather_range(start, min(st.count, start + chunk))
                yield part["serial"], part["image"]

    @property
    def next_serial(self) -> int:
        """Serial the next added record will get (records 0 .. next_serial - 1 exist or existed)."""
        return self._serial

    # ---------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Small JSON-able metadata: sizes, counters, sampler RNG state."""
        return {
            "format": _FORMAT_VERSION,
            "capacity_windows": self.capacity,
            "seq_len": self.seq_len,
            "num_streams": self.num_streams,
            "image_shape": list(self.image_shape),
            "action_dim": self.action_dim,
            "seed": self.seed,
            "stream_counts": [s.count for s in self._streams],
            "evicted_windows": [int(x) for x in self._evicted],
            "total_windows": self._total_windows,
            "num_windows": self._num_windows,
            "rng": self._rng.bit_generator.state,
        }

    def _check_compatible(self, meta: dict, where: str) -> None:
        for key, mine in (("capacity_windows", self.capacity), ("seq_len", self.seq_len),
                          ("num_streams", self.num_streams), ("image_shape", list(self.image_shape)),
                          ("action_dim", self.action_dim)):
            if meta[key] != mine:
                raise ValueError(f"{where}: {key} is {meta[key]!r} on disk but {mine!r} in this buffer")

    def save(self, directory, step: int) -> None:
        """Writes the records added since the last save as `chunk_<step>.npz`, then `state_<step>.json`."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        step = int(step)
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(f"replay save at step {step} is not after the last save/restore ({self._last_step})")
        replay_files.drop_after(directory, self._last_step if self._last_step is not None else -1)
        chunks = [c for c in self._chunks if c["step"] < step]
        if self._pending:
            order = np.asarray(self._pending, np.int32)
            index = np.empty(len(order), np.int64)
            keep = np.ones(len(order), bool)
            parts = {}
            for s in range(self.num_streams):
                m = order == s
                index[m] = self._saved[s] + np.arange(int(m.sum()))
                lo = max(int(self._saved[s]), self._streams[s].first_present())  # freed records are evicted
                keep &= ~m | (index >= lo)
                if self._streams[s].count > lo:
                    parts[s] = self._streams[s].gather_range(lo, self._streams[s].count)
            order, index = order[keep], index[keep]
            data = {"image": np.empty((len(order),) + self.image_shape, np.uint8),
                    "action": np.empty((len(order), self.action_dim), np.float32),
                    "reward": np.empty((len(order),), np.float32),
                    "is_first": np.empty((len(order),), bool),
                    "is_terminal": np.empty((len(order),), bool)}
            for s, got in parts.items():
                m = np.nonzero(order == s)[0]
                for k in data:
                    data[k][m] = got[k]
            atomic_write(directory / replay_files.chunk_name(step),
                          lambda f: np.savez(f, stream=order, index=index, **data))
            max_index = [int(index[order == s].max()) if np.any(order == s) else -1
                         for s in range(self.num_streams)]
            chunks.append({"step": step, "file": replay_files.chunk_name(step), "max_index": max_index})
        # chunks whose records are all evicted are no longer needed by this step
        chunks = [c for c in chunks if any(c["max_index"][s] >= self._evicted[s] for s in range(self.num_streams))]
        state = {"step": step, "buffer": self.state_dict(), "chunks": chunks}
        atomic_write(directory / replay_files.state_name(step), json.dumps(state))
        self._chunks = chunks
        self._saved = np.array([s.count for s in self._streams], np.int64)
        self._pending = []
        self._last_step = step

    # the directory's file format: twister_jax/replay_files.py
    saved_steps = staticmethod(replay_files.saved_steps)
    missing_files = staticmethod(replay_files.missing_files)

    def restore(self, directory, step: int) -> None:
        """Restores the buffer exactly as it was when `save(directory, step)` returned.

        Raises:
          FileNotFoundError: no complete save for `step`, or a chunk it needs is missing.
          ValueError: the saved buffer has other sizes, or a chunk is damaged.
        On an error the buffer is left as it was.
        """
        fresh = ReplayBuffer(self.capacity, self.seq_len, self.num_streams, self.image_shape,
                             self.action_dim, self.seed, self.block_size)
        fresh._load(pathlib.Path(directory), int(step))  # pylint: disable=protected-access
        self.__dict__.update(fresh.__dict__)  # only once everything has been read

    def _load(self, directory: pathlib.Path, step: int) -> None:
        path = directory / replay_files.state_name(step)
        missing = self.missing_files(directory, step)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise FileNotFoundError(f"missing replay files: {shown}")
        state = json.loads(path.read_text())
        meta = state["buffer"]
        self._check_compatible(meta, str(path))
        evicted = np.asarray(meta["evicted_windows"], np.int64)
        counts = np.asarray(meta["stream_counts"], np.int64)
        self._reset_storage()
        streams, ends = [], []
        loaded = np.zeros(self.num_streams, np.int64)
        for c in state["chunks"]:
            try:
                with np.load(directory / c["file"]) as z:
                    order, index = z["stream"], z["index"]
                    need = index >= evicted[order]
                    arrays = {k: z[k] for k in ("image", "action", "reward", "is_first", "is_terminal")}
            except FileNotFoundError:
                raise
            except Exception as exc:  # truncated / corrupt archive
                raise ValueError(f"replay chunk {directory / c['file']} is damaged: {exc}") from exc
            # serials: the loaded records in add order (the chunk's order is add order)
            arrays["serial"] = self._serial + np.cumsum(need, dtype=np.int64) - 1
            self._serial += int(need.sum())
            for s in range(self.num_streams):
                m = np.nonzero((order == s) & need)[0]
                if len(m):  # a stream's records in one chunk are consecutive
                    if not np.array_equal(index[m], np.arange(index[m[0]], index[m[0]] + len(m))):
                        raise ValueError(f"replay chunk {c['file']}: stream {s} records are not consecutive")
                    self._streams[s].put_range(int(index[m[0]]), {k: v[m] for k, v in arrays.items()})
                    loaded[s] += len(m)
            win = index >= self.seq_len - 1
            streams.append(order[win])
            ends.append(index[win])
        for s, st in enumerate(self._streams):
            st.count = int(counts[s])
            if loaded[s] != st.count - int(evicted[s]):
                raise ValueError(f"replay step {step}: records of stream {s} missing from the chunks")
        n, total = int(meta["num_windows"]), int(meta["total_windows"])
        streams = np.concatenate(streams) if streams else np.zeros(0, np.int32)
        ends = np.concatenate(ends) if ends else np.zeros(0, np.int64)
        if len(streams) < n:
            raise ValueError(f"replay step {step}: {len(streams)} windows on disk, {n} expected")
        streams, ends = streams[len(streams) - n:], ends[len(ends) - n:]
        size = self.capacity if total >= self.capacity else max(min(self.capacity, 1024), total)
        self._win_stream = np.zeros(size, np.int32)
        self._win_end = np.zeros(size, np.int64)
        slots = (np.arange(total - n, total)) % self.capacity
        self._win_stream[slots] = streams
        self._win_end[slots] = ends
        self._total_windows, self._num_windows = total, n
        self._evicted = evicted
        self._saved = counts.copy()
        self._pending = []
        rng = np.random.Generator(np.random.PCG64())
        rng.bit_generator.state = meta["rng"]
        self._rng = rng
        self._chunks = state["chunks"]
        self._last_step = step
