"""A device-side copy of the replay's frames, so that a batch's images never cross from host to device.

Why: an Atari batch is B x T = 16 x 64 frames of 64 x 64 x 3 bytes, 12.6 MB. Gathering it on the host
and copying it to the device each gradient step is most of the host work an accelerator waits for
(docs/architecture.md §8). With the store, each new frame goes to the device once (12 KB per env step),
and a batch's images are one gather on the device from the frame slots the replay samples.

Layout: `store` uint8 (N, S, H, W, C) for the N runs of a group (N = 1 solo); frame slot `k` of run i
holds the replay record whose serial `s` has `s % frame_slots == k` (`replay.ReplayBuffer`, "Frame
slots"). S grows by doubling up to `frame_slots` as records arrive (so a 100k-step run holds about
its 100k frames, not the replay capacity's million), one copy on the device per growth.

The host part, `FrameStore`, owns no state that a checkpoint needs: it is rebuilt from the replays
(`live_frames`) whenever one was restored or replaced (its `generation` changed), so resume stays exact
and the images a batch gets are the replay's own, byte for byte.

Config: `replay_on_device` ("auto": on with one GPU/TPU device in one process, off on CPU and with
several devices; "on"; "off"). See `wanted`.

Device functions (pure, jitted):
  insert(store (N,S,H,W,C) u8, slots (N,K) i32, frames (N,K,H,W,C) u8) -> store  (slot S = padding, dropped)
  gather(store (N,S,H,W,C) u8, slots (N,B,T) i32) -> images (N,B,T,H,W,C) u8 (or (B,T,H,W,C) solo)
  insert_gather(store, new slots, new frames, slots) -> (store, images): both in one dispatch (the
    frames an env step added, then a batch's gather: what each gradient step needs)
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("auto", "on", "off")
_MIN_SLOTS = 4096


def _insert(store: jax.Array, slots: jax.Array, frames: jax.Array) -> jax.Array:
    return jax.vmap(lambda s, i, f: s.at[i].set(f, mode="drop"))(store, slots, frames)


def _gather(store: jax.Array, slots: jax.Array, solo: bool) -> jax.Array:
    if solo:
        return store[0][slots[0]]
    return jax.vmap(lambda s, i: s[i])(store, slots)


@functools.partial(jax.jit, donate_argnums=0)
def insert(store: jax.Array, slots: jax.Array, frames: jax.Array) -> jax.Array:
    """Writes frames (N,K,H,W,C) to slots (N,K) of store (N,S,H,W,C); slots >= S are dropped (padding)."""
    return _insert(store, slots, frames)


@functools.partial(jax.jit, static_argnames="solo")
def gather(store: jax.Array, slots: jax.Array, solo: bool = False) -> jax.Array:
    """Images (N,B,T,H,W,C) at slots (N,B,T) of store (N,S,H,W,C); solo: (B,T,H,W,C) of run 0."""
    return _gather(store, slots, solo)


@functools.partial(jax.jit, donate_argnums=0, static_argnames="solo")
def insert_gather(store: jax.Array, new_slots: jax.Array, new_frames: jax.Array, slots: jax.Array,
                  solo: bool = False) -> tuple:
    """`insert(store, new_slots, new_frames)`, then `gather` of `slots` from the result: (store, images)."""
    store = _insert(store, new_slots, new_frames)
    return store, _gather(store, slots, solo)


@functools.partial(jax.jit, static_argnames="size")
def _grow(store: jax.Array, size: int) -> jax.Array:
    return jnp.pad(store, ((0, 0), (0, size - store.shape[1])) + ((0, 0),) * (store.ndim - 2))


def wanted(config) -> bool:
    """Whether `config.replay_on_device` asks for the store on this host's devices.

    Raises:
      ValueError: "on" with more than one device or process (the store is not sharded yet).
    """
    mode = str(config.get("replay_on_device", "auto"))
    if mode not in MODES:
        raise ValueError(f"config.replay_on_device={mode!r} is not one of {MODES}")
    single = jax.device_count() == 1 and jax.process_count() == 1
    if mode == "on" and not single:
        raise ValueError(f"config.replay_on_device='on' needs a single device in a single process; this run has "
                         f"{jax.device_count()} devices in {jax.process_count()} processes (use 'auto' or 'off')")
    if mode == "auto":
        return single and jax.default_backend() in ("gpu", "tpu")
    return mode == "on"


class FrameStore:
    """The frames of `replays` (one per run) on the default device; see the module docstring.

    `gather(slots)` returns a batch's images from `replay.sample(B, images=False)["frame_slot"]` of
    every run, stacked (N,B,T), after bringing the store up to date in the same dispatch (the records
    added since the last call; a rebuild first if a replay was restored). `sync()` only brings it up to date.
    """

    def __init__(self, replays: list):
        self.replays = list(replays)
        self.limit = int(self.replays[0].frame_slots)
        if any(int(r.frame_slots) != self.limit for r in self.replays):
            raise ValueError("the runs' replays have different frame_slots")
        self.image_shape = tuple(self.replays[0].image_shape)
        self.store = None
        self._seen = [None] * len(self.replays)  # replay generation the store holds

    @property
    def size(self) -> int:
        return 0 if self.store is None else int(self.store.shape[1])

    def _ensure(self, serial_end: int) -> None:
        """Grows the store to hold serials below `serial_end` (up to `limit` slots)."""
        need = min(self.limit, serial_end)
        if self.store is not None and need <= self.size:
            return
        size = max(_MIN_SLOTS, self.size)
        while size < need:
            size *= 2
        size = min(size, self.limit)
        if self.store is None:
            self.store = jnp.zeros((len(self.replays), size) + self.image_shape, jnp.uint8)
        else:
            self.store = _grow(self.store, size)

    def _write(self, per_run: list) -> None:
        """per_run[i]: (serials (K_i,), images list or (K_i,H,W,C)) for run i; one padded insert."""
        staged = self._stage(per_run)
        if staged is not None:
            self.store = insert(self.store, *staged)  # NumPy in: no eager dispatch

    def _stage(self, per_run: list):
        """The store grown for `per_run` (see `_write`) and its padded insert arguments
        (slots int32 (N, K'), frames uint8 (N, K', H, W, C)) as NumPy; None when there is nothing."""
        k = max(len(s) for s, _ in per_run)
        if k == 0:
            return None
        self._ensure(max(int(s[-1]) + 1 for s, _ in per_run if len(s)))  # serials increase
        width = 1
        while width < k:
            width *= 2  # few distinct shapes, few compiles
        n = len(self.replays)
        slots = np.full((n, width), self.size, np.int32)  # padding: out of range, dropped
        frames = np.empty((n, width) + self.image_shape, np.uint8)
        for i, (serials, images) in enumerate(per_run):
            m = len(serials)
            slots[i, :m] = serials % self.limit
            for j, image in enumerate(images):
                frames[i, j] = image
            frames[i, m:] = 0
        return slots, frames

    def _refresh(self) -> None:
        """Rebuilds the runs whose replay was restored or replaced since the store last saw it."""
        fresh = [r.generation != g for r, g in zip(self.replays, self._seen)]
        if any(fresh):
            self._rebuild([i for i, f in enumerate(fresh) if f])

    def sync(self) -> None:
        """Uploads the records added since the last sync; rebuilds from a replay that was restored."""
        self._refresh()
        self._write([r.take_new_frames() for r in self.replays])

    def _rebuild(self, which: list) -> None:
        for i in which:
            r = self.replays[i]
            r.track_frames = True
            r.take_new_frames()  # everything is in live_frames
            self._seen[i] = r.generation
            for serials, images in r.live_frames():
                self._write([(serials, images) if j == i else (np.zeros(0, np.int64), [])
                             for j in range(len(self.replays))])

    def gather(self, slots: np.ndarray) -> jax.Array:
        """Images uint8 (N,B,T,H,W,C) for frame slots int32 (N,B,T) of the replays as they are now
        (the new records are uploaded in the same call); (B,T,H,W,C) for a solo run."""
        self._refresh()
        staged = self._stage([r.take_new_frames() for r in self.replays])
        slots, solo = np.asarray(slots, np.int32), len(self.replays) == 1
        if staged is None:
            return gather(self.store, slots, solo=solo)
        self.store, images = insert_gather(self.store, *staged, slots, solo=solo)
        return images
