"""Where the replay's records live: per env stream, in blocks of records (NumPy only, no jax import).

A record is one observation with the action that led to it (docs/original.md §2.1): its image and
its small fields (`FIELDS`: action, reward, is_first, is_terminal, and the buffer's serial).
`Stream` stores the records of one env in blocks of `block_size` records, allocated as the stream
grows and freed once the buffer says no stored window needs them; `twister_jax.replay.ReplayBuffer`
keeps the windows, samples them and saves them.

The small fields of a block are one structured array (`record_dtype`), viewed also as plain bytes,
so copying a window is one slice copy for the images and one for everything else; `unpack_raw`
turns copied bytes back into one array per field.
"""
from __future__ import annotations

import numpy as np


def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts on an `align`-byte boundary (a view of a slightly
    larger buffer). JAX's CPU backend takes such host arrays without copying them."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    offset = -raw.__array_interface__["data"][0] % align
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


FIELDS = ("action", "reward", "is_first", "is_terminal", "serial")  # the small fields of a record


def record_dtype(action_dim: int) -> np.dtype:
    """The packed small fields of one record (a NumPy structured dtype): one copy moves them all."""
    return np.dtype([("action", np.float32, (int(action_dim),)), ("reward", np.float32),
                     ("is_first", np.bool_), ("is_terminal", np.bool_), ("serial", np.int64)])


class Stream:
    """Records of one env, in blocks of `block_size`; record i lives in block i // block_size.

    A block is {"image": uint8 (n, H, W, C), "rec": `record_dtype` (n,), "raw": uint8 (n, itemsize)}:
    the small fields packed ("raw" is the same memory as plain bytes, which NumPy copies as fast as
    any array; a structured copy is several times slower), so copying a window is one slice copy
    for the images and one for everything else.
    """

    def __init__(self, block_size: int, image_shape, action_dim: int):
        self.block_size = block_size
        self.image_shape = tuple(image_shape)
        self.rec_dtype = record_dtype(action_dim)
        self.blocks: list = []  # None for freed blocks
        self.count = 0  # records ever appended (absolute index of the next record)

    def _block(self, b: int) -> dict:
        """Block b, allocated if needed."""
        while len(self.blocks) <= b:
            self.blocks.append(None)
        if self.blocks[b] is None:
            n = self.block_size
            rec = np.empty(n, self.rec_dtype)
            self.blocks[b] = {"image": np.empty((n,) + self.image_shape, np.uint8), "rec": rec,
                              "raw": rec.view(np.uint8).reshape(n, self.rec_dtype.itemsize)}
        return self.blocks[b]

    def put(self, i: int, image, action, reward, is_first, is_terminal, serial: int) -> np.ndarray:
        """Stores record i; returns its stored image (a view)."""
        b, o = divmod(i, self.block_size)
        blk = self._block(b)
        blk["image"][o] = image
        blk["rec"][o] = (action, reward, is_first, is_terminal, serial)
        return blk["image"][o]

    def free_below(self, first_needed: int) -> None:
        """Frees every block whose records all lie below `first_needed`."""
        for b in range(min(first_needed // self.block_size, len(self.blocks))):
            self.blocks[b] = None

    def copy_window(self, start: int, length: int, raw: np.ndarray, image, row: int) -> None:
        """Copies records [start, start + length) into row `row` of `raw` uint8 (R, T, itemsize) (the
        packed small fields, see `unpack_raw`) and, unless None, `image` uint8 (R, T, H, W, C)."""
        b, o = divmod(start, self.block_size)
        if o + length <= self.block_size:  # in one block, as most windows are
            blk = self.blocks[b]
            raw[row] = blk["raw"][o:o + length]
            if image is not None:
                image[row] = blk["image"][o:o + length]
            return
        t = 0
        while t < length:
            b, o = divmod(start + t, self.block_size)
            n = min(length - t, self.block_size - o)
            blk = self.blocks[b]
            raw[row, t:t + n] = blk["raw"][o:o + n]
            if image is not None:
                image[row, t:t + n] = blk["image"][o:o + n]
            t += n

    def put_range(self, start: int, data: dict) -> None:
        """Writes records [start, start + n) from the stacked arrays in `data` ("image" and `FIELDS`)."""
        n = len(data["reward"])
        rec = np.empty(n, self.rec_dtype)
        for f in FIELDS:
            rec[f] = data[f]
        t = 0
        while t < n:
            b, o = divmod(start + t, self.block_size)
            blk = self._block(b)
            k = min(n - t, self.block_size - o)
            blk["image"][o:o + k] = data["image"][t:t + k]
            blk["rec"][o:o + k] = rec[t:t + k]
            t += k

    def gather_range(self, start: int, stop: int) -> dict:
        """Records [start, stop) as stacked arrays: "image" and `FIELDS`."""
        n = stop - start
        image = np.empty((1, n) + self.image_shape, np.uint8)
        raw = np.empty((1, n, self.rec_dtype.itemsize), np.uint8)
        self.copy_window(start, n, raw, image, 0)
        return dict(unpack_raw(raw[0], self.rec_dtype), image=image[0])

    def first_present(self) -> int:
        """Smallest record index whose block is still allocated (== count when none)."""
        for b, blk in enumerate(self.blocks):
            if blk is not None:
                return min(b * self.block_size, self.count)
        return self.count


def unpack_raw(raw: np.ndarray, dtype: np.dtype, empty=np.empty) -> dict:
    """Packed records as bytes uint8 (..., itemsize) of `dtype` -> {field: contiguous array of shape
    (...) (+ (A,) for action)}."""
    rec = raw.view(dtype)[..., 0]
    out = {}
    for f in FIELDS:
        col = rec[f]
        out[f] = empty(col.shape, col.dtype)
        out[f][...] = col
    return out
