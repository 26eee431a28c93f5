"""Replay buffer (docs/original.md §2): windows, flags, uniformity, eviction, streams, save/restore."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from twister_jax.replay import ReplayBuffer

IMG = (4, 4, 3)  # tiny frames; the layout does not depend on the frame size
A = 3


def _record(stream, i):
    """A record whose every field encodes (stream, i), so any sampled window can be checked."""
    image = np.full(IMG, (stream * 37 + i) % 256, np.uint8)
    image[0, 0, 0] = stream
    action = np.array([stream, i, -i], np.float32)
    return image, action, float(i) + 0.5 * stream, i % 7 == 0, i % 11 == 10


def _fill(rb, counts):
    """Appends records round-robin until stream s holds counts[s] records."""
    n = [0] * len(counts)
    while any(n[s] < counts[s] for s in range(len(counts))):
        for s in range(len(counts)):
            if n[s] < counts[s]:
                rb.add(s, *_record(s, n[s]))
                n[s] += 1


def _expected(stream, end, T):
    recs = [_record(stream, i) for i in range(end - T + 1, end + 1)]
    return {
        "image": np.stack([r[0] for r in recs]), "action": np.stack([r[1] for r in recs]),
        "reward": np.array([r[2] for r in recs], np.float32), "is_first": np.array([r[3] for r in recs]),
        "is_terminal": np.array([r[4] for r in recs]),
    }


def _identify(batch, b):
    """(stream, end index) of batch row b, read back from the encoded action."""
    return int(batch["action"][b, -1, 0]), int(batch["action"][b, -1, 1])


def _assert_batch_exact(batch, T):
    for b in range(batch["reward"].shape[0]):
        s, end = _identify(batch, b)
        want = _expected(s, end, T)
        for k in want:
            np.testing.assert_array_equal(batch[k][b], want[k], err_msg=f"{k} row {b}")


def test_windows_count_and_batch_format():
    T = 5
    rb = ReplayBuffer(100, T, 1, IMG, A, seed=0)
    for i in range(T - 1):
        rb.add(0, *_record(0, i))
        assert rb.num_windows == 0
    rb.add(0, *_record(0, T - 1))
    assert rb.num_windows == 1
    for i in range(T, 20):
        rb.add(0, *_record(0, i))
    assert rb.num_windows == 20 - T + 1
    assert [rb.window(k) for k in range(rb.num_windows)] == [(0, e) for e in range(T - 1, 20)]
    batch = rb.sample(6)
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (6, T) + IMG
    assert batch["action"].dtype == np.float32 and batch["action"].shape == (6, T, A)
    assert batch["reward"].dtype == np.float32 and batch["reward"].shape == (6, T)
    assert batch["is_first"].dtype == bool and batch["is_first"].shape == (6, T)
    assert batch["is_terminal"].dtype == bool and batch["is_terminal"].shape == (6, T)
    _assert_batch_exact(batch, T)
    # every array starts on a 64-byte boundary (JAX's CPU backend then takes it without a copy)
    # and owns fresh memory: a later sample does not change an earlier batch
    for _ in range(5):
        again = rb.sample(6)
        assert all(v.ctypes.data % 64 == 0 and v.flags.c_contiguous for v in again.values())
        assert not any(np.shares_memory(again[k], batch[k]) for k in batch)
    _assert_batch_exact(batch, T)


def test_windows_cross_episodes_with_is_first():
    T = 6
    rb = ReplayBuffer(100, T, 1, IMG, A, seed=1, block_size=4)  # windows span several blocks
    # an episode of 3 steps (4 records), then a new episode: its reset record has is_first
    flags = [True, False, False, False, True, False, False, False, False, True]
    for i, f in enumerate(flags):
        rb.add(0, np.full(IMG, i, np.uint8), np.zeros(A) if f else np.ones(A), 0.0 if f else 1.0, f, False)
    assert rb.num_windows == len(flags) - T + 1
    seen = set()
    for _ in range(40):
        batch = rb.sample(4)
        for b in range(4):
            start = int(batch["image"][b, 0, 0, 0, 0])
            seen.add(start)
            np.testing.assert_array_equal(batch["image"][b, :, 0, 0, 0], np.arange(start, start + T))
            np.testing.assert_array_equal(batch["is_first"][b], flags[start:start + T])
            np.testing.assert_array_equal(batch["action"][b, :, 0], [0.0 if f else 1.0 for f in flags[start:start + T]])
    assert seen == set(range(len(flags) - T + 1))  # the windows crossing the episode boundary too


def test_exact_content_multiple_streams_and_blocks():
    T = 8
    rb = ReplayBuffer(1000, T, 3, IMG, A, seed=2, block_size=5)
    _fill(rb, [30, 8, 20])  # stream 1 has exactly one window
    assert rb.num_windows == (30 - T + 1) + 1 + (20 - T + 1)
    batch = rb.sample(64)
    _assert_batch_exact(batch, T)
    assert {_identify(batch, b)[0] for b in range(64)} == {0, 1, 2}


def test_sampling_is_uniform_over_windows():
    T = 4
    rb = ReplayBuffer(1000, T, 2, IMG, A, seed=3)
    _fill(rb, [13, 23])  # 10 + 20 windows: uniform over windows means stream 1 gets 2/3
    n_windows = rb.num_windows
    assert n_windows == 30
    counts = {}
    draws = 0
    for _ in range(300):
        batch = rb.sample(16)
        for b in range(16):
            key = _identify(batch, b)
            counts[key] = counts.get(key, 0) + 1
            draws += 1
    assert len(counts) == n_windows
    expected = draws / n_windows
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    # 29 degrees of freedom: the 0.999 quantile is 58.3; with a fixed seed this is deterministic
    assert chi2 < 58.3, chi2
    share1 = sum(c for (s, _), c in counts.items() if s == 1) / draws
    assert abs(share1 - 2 / 3) < 0.03


def test_capacity_evicts_oldest_windows_fifo_and_frees_blocks():
    T = 4
    rb = ReplayBuffer(10, T, 2, IMG, A, seed=4, block_size=4)
    _fill(rb, [40, 40])
    assert rb.num_windows == 10
    # creation order alternates streams; the newest 10 windows are ends 35..39 of both streams
    want = [(s, e) for e in range(35, 40) for s in (0, 1)]
    assert [rb.window(k) for k in range(10)] == want
    for _ in range(20):
        batch = rb.sample(8)
        _assert_batch_exact(batch, T)
        assert all(_identify(batch, b)[1] >= 35 for b in range(8))
    for st in rb._streams:  # records below 32 (the first needed is 32) live in freed blocks
        assert all(blk is None for blk in st.blocks[:8]) and st.blocks[8] is not None


def test_sampler_seeded():
    a, b, c = (ReplayBuffer(100, 4, 1, IMG, A, seed=s) for s in (7, 7, 8))
    for rb in (a, b, c):
        _fill(rb, [40])
    x, y, z = a.sample(16), b.sample(16), c.sample(16)
    np.testing.assert_array_equal(x["action"], y["action"])
    assert not np.array_equal(x["action"], z["action"])


def _same_buffer(a, b, n=5):
    assert a.num_windows == b.num_windows and a.state_dict() == b.state_dict()
    assert [a.window(k) for k in range(a.num_windows)] == [b.window(k) for k in range(b.num_windows)]
    for _ in range(n):  # same sampler state -> same next samples
        x, y = a.sample(8), b.sample(8)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def _chunks(d):
    return sorted(p.name for p in pathlib.Path(d).iterdir() if p.name.startswith("chunk_"))


def test_save_restore_round_trip_incremental_and_older_step(tmp_path):
    T = 5
    mk = lambda: ReplayBuffer(1000, T, 2, IMG, A, seed=9, block_size=8)
    rb = mk()
    _fill(rb, [20, 3])  # stream 1 is a live tail without any window yet
    rb.sample(3)  # advance the sampler before the save
    rb.save(tmp_path, 100)
    ref100 = mk()
    ref100.restore(tmp_path, 100)
    size100 = (tmp_path / "chunk_000000000100.npz").stat().st_size
    for s, n0, n1 in ((0, 20, 30), (1, 3, 13)):
        for i in range(n0, n1):
            rb.add(s, *_record(s, i))
    rb.save(tmp_path, 200)
    # the second save wrote only the 20 new records: the first chunk is untouched, the new one holds 20
    assert _chunks(tmp_path) == ["chunk_000000000100.npz", "chunk_000000000200.npz"]
    assert (tmp_path / "chunk_000000000100.npz").stat().st_size == size100
    with np.load(tmp_path / "chunk_000000000200.npz") as z:
        assert len(z["index"]) == 20 and sorted(z["index"][z["stream"] == 1]) == list(range(3, 13))
    with np.load(tmp_path / "chunk_000000000100.npz") as z:
        assert len(z["index"]) == 23
    rb.save(tmp_path, 300)  # nothing new: a state file, no chunk
    assert _chunks(tmp_path) == ["chunk_000000000100.npz", "chunk_000000000200.npz"]
    assert ReplayBuffer.saved_steps(tmp_path) == [100, 200, 300]

    new = mk()
    new.restore(tmp_path, 300)
    _same_buffer(rb, new)
    _assert_batch_exact(new.sample(16), T)
    rb.sample(16)  # keep both samplers in step
    # the live tails continue: adding the same records to both gives the same buffers
    for b in (rb, new):
        for i in range(13, 20):
            b.add(1, *_record(1, i))
    _same_buffer(rb, new)

    old = mk()
    old.restore(tmp_path, 100)  # an older step, after later saves
    _same_buffer(ref100, old)
    assert old.stream_length(0) == 20 and old.stream_length(1) == 3
    # the next save from the older lineage replaces the newer files
    for i in range(20, 25):
        old.add(0, *_record(0, i))
    old.save(tmp_path, 150)
    assert ReplayBuffer.saved_steps(tmp_path) == [100, 150]
    assert _chunks(tmp_path) == ["chunk_000000000100.npz", "chunk_000000000150.npz"]
    again = mk()
    again.restore(tmp_path, 150)
    _same_buffer(old, again)
    with pytest.raises(FileNotFoundError):
        mk().restore(tmp_path, 200)


def test_truncated_newest_chunk_and_kill_leftovers(tmp_path):
    T = 4
    mk = lambda: ReplayBuffer(1000, T, 1, IMG, A, seed=11)
    rb = mk()
    _fill(rb, [10])
    rb.save(tmp_path, 1)
    ref = mk()
    ref.restore(tmp_path, 1)
    for i in range(10, 30):
        rb.add(0, *_record(0, i))
    rb.save(tmp_path, 2)
    newest = tmp_path / "chunk_000000000002.npz"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (tmp_path / ".chunk_000000000003.npz.tmp123").write_bytes(b"partial")  # a kill mid-write
    with pytest.raises(ValueError, match="damaged"):
        ref.restore(tmp_path, 2)  # fails, and leaves `ref` as it was (checked just below)
    back = mk()
    back.restore(tmp_path, 1)
    _same_buffer(ref, back)
    # a chunk without its state file (killed before the state was renamed) is not a saved step
    (tmp_path / "state_000000000002.json").unlink()
    assert ReplayBuffer.saved_steps(tmp_path) == [1]
    with pytest.raises(FileNotFoundError):
        mk().restore(tmp_path, 2)
    back.save(tmp_path, 2)  # the next save replaces the damaged chunk and removes the leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chunk_000000000001.npz", "state_000000000001.json", "state_000000000002.json"]
    again = mk()
    again.restore(tmp_path, 2)
    _same_buffer(back, again)


def test_missing_chunk_raises_and_sizes_checked(tmp_path):
    rb = ReplayBuffer(100, 4, 1, IMG, A, seed=0)
    _fill(rb, [10])
    rb.save(tmp_path, 5)
    with pytest.raises(ValueError, match="seq_len"):
        ReplayBuffer(100, 5, 1, IMG, A).restore(tmp_path, 5)
    os.remove(tmp_path / "chunk_000000000005.npz")
    with pytest.raises(FileNotFoundError):
        ReplayBuffer(100, 4, 1, IMG, A).restore(tmp_path, 5)


def test_save_restore_after_eviction(tmp_path):
    T = 4
    mk = lambda: ReplayBuffer(6, T, 2, IMG, A, seed=12, block_size=4)
    rb = mk()
    _fill(rb, [10, 10])
    rb.save(tmp_path, 1)
    for i in range(10, 30):
        for s in (0, 1):
            rb.add(s, *_record(s, i))
    rb.save(tmp_path, 2)
    new = mk()
    new.restore(tmp_path, 2)
    _same_buffer(rb, new)
    _assert_batch_exact(new.sample(16), T)
    rb.sample(16)
    for b in (rb, new):  # eviction goes on identically after the restore
        for s, i in [(s, i) for i in range(30, 35) for s in (0, 1)]:
            b.add(s, *_record(s, i))
    _same_buffer(rb, new)
    rb.save(tmp_path, 3)  # chunk 1 holds only evicted records: step 3 no longer lists it
    os.remove(tmp_path / "chunk_000000000001.npz")
    again = mk()
    again.restore(tmp_path, 3)
    _same_buffer(rb, again)


def test_import_does_not_import_jax():
    code = "import sys, twister_jax.replay; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=pathlib.Path(__file__).parents[1])
