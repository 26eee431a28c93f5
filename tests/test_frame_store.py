"""The device copy of the replay's frames (twister_jax/frame_store.py): the images gathered on the
device equal the host replay's for the same windows, through growth, slot reuse, resets and a restore."""
import ml_collections
import numpy as np
import pytest

from twister_jax import frame_store
from twister_jax.frame_store import FrameStore
from twister_jax.replay import ReplayBuffer

SHAPE = (4, 4, 3)


def _pair(capacity, seq_len, streams, seed=3, block_size=64):
    """Two identical buffers: one sampled with images on the host, one through the store."""
    return [ReplayBuffer(capacity, seq_len, streams, SHAPE, 2, seed=seed, block_size=block_size) for _ in range(2)]


def _add_step(buffers, rng, streams):
    """One env step of every stream; a stream whose episode ends also gets its reset record."""
    for s in range(streams):
        for _ in range(2 if rng.random() < 0.1 else 1):
            rec = (rng.integers(0, 256, SHAPE, dtype=np.uint8), rng.random(2).astype(np.float32),
                   float(rng.random()), bool(rng.random() < 0.1), False)
            for b in buffers:
                b.add(s, *rec)


def _check(host, dev, store, batch_size=6):
    store.sync()
    want = host.sample(batch_size)
    got = dev.sample(batch_size, images=False)
    images = np.asarray(store.gather(got.pop("frame_slot")[None]))
    np.testing.assert_array_equal(images, want.pop("image"))
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_gathered_images_equal_host_batches_through_growth_and_slot_reuse():
    host, dev = _pair(capacity=5000, seq_len=5, streams=3)
    store = FrameStore([dev])
    rng = np.random.default_rng(0)
    sizes = set()
    for step in range(3600):  # ~11k records: the store grows 4096 -> its limit (5,072), then slots are reused
        _add_step([host, dev], rng, 3)
        if step >= 10 and step % 97 == 0:
            _check(host, dev, store)
            sizes.add(store.size)
    _check(host, dev, store)
    assert dev.next_serial > dev.frame_slots  # slots were reused
    assert sizes == {4096, dev.frame_slots}


def test_store_rebuilt_after_restore(tmp_path):
    host, dev = _pair(capacity=300, seq_len=6, streams=2)
    store = FrameStore([dev])
    rng = np.random.default_rng(1)
    for _ in range(200):
        _add_step([host, dev], rng, 2)
    _check(host, dev, store)
    for step in (1, 2):  # two saves: the restore reads two chunks
        dev.save(tmp_path / "dev", step)
        host.save(tmp_path / "host", step)
        for _ in range(40):
            _add_step([host, dev], rng, 2)
    dev.save(tmp_path / "dev", 3)
    host.save(tmp_path / "host", 3)
    for _ in range(400):  # beyond the save: evictions and slot reuse, then back to the save
        _add_step([host, dev], rng, 2)
    _check(host, dev, store)
    dev.restore(tmp_path / "dev", 3)
    host.restore(tmp_path / "host", 3)
    for _ in range(5):
        _check(host, dev, store)
    for _ in range(300):
        _add_step([host, dev], rng, 2)
        _check(host, dev, store, batch_size=2)


def test_group_store_gathers_each_runs_own_frames():
    pairs = [_pair(capacity=50, seq_len=4, streams=2, seed=s) for s in (5, 6)]
    store = FrameStore([dev for _, dev in pairs])
    rngs = [np.random.default_rng(10 + i) for i in range(2)]
    for _ in range(120):
        for (host, dev), rng in zip(pairs, rngs):
            _add_step([host, dev], rng, 2)
    store.sync()
    wants = [host.sample(3) for host, _ in pairs]
    slots = np.stack([dev.sample(3, images=False)["frame_slot"] for _, dev in pairs])
    images = np.asarray(store.gather(slots))
    assert images.shape == (2, 3, 4) + SHAPE
    for i, want in enumerate(wants):
        np.testing.assert_array_equal(images[i], want["image"])


def test_reused_slot_raises_instead_of_a_wrong_frame():
    class Tight(ReplayBuffer):
        frame_slots = 30  # fewer slots than the records a stored window still needs

    rb = Tight(40, 5, 1, SHAPE, 2, seed=0)
    rng = np.random.default_rng(2)
    for _ in range(100):
        _add_step([rb], rng, 1)
    with pytest.raises(RuntimeError, match="frame slot was reused"):
        for _ in range(50):
            rb.sample(8, images=False)


def test_wanted_modes():
    def cfg(mode):
        return ml_collections.ConfigDict({"replay_on_device": mode})
    assert frame_store.wanted(cfg("auto")) is False  # CPU
    assert frame_store.wanted(cfg("on")) is True
    assert frame_store.wanted(cfg("off")) is False
    with pytest.raises(ValueError, match="replay_on_device='gpu' is not one of"):
        frame_store.wanted(cfg("gpu"))
