"""Checkpoint round trips on dummy pytrees: restore, keep-last-k, corrupt fallback, config refusal."""
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from config_utils import get_config
from twister_jax import checkpoint as ckpt


class FakeReplay:
    """Records save/restore calls; `restore` fails for steps never saved (like missing chunks)."""

    def __init__(self, log):
        self.log = log

    def save(self, directory, step):
        pathlib.Path(directory, f"chunk_{step}").write_text(str(step))
        self.log.append(("replay.save", step, sorted(os.listdir(pathlib.Path(directory).parent / "checkpoints"))))

    def restore(self, directory, step):
        if not pathlib.Path(directory, f"chunk_{step}").exists():
            raise FileNotFoundError(f"no replay chunk for step {step}")
        self.log.append(("replay.restore", step))


def _trees(step):
    train = {"step": jnp.int32(step), "params": {"w": jnp.arange(6.0).reshape(2, 3) + step,
                                                  "b": jnp.zeros((3,), jnp.bfloat16)}}
    act = {"cache": jnp.ones((1, 8, 4)) * step, "valid": jnp.zeros((1, 8), bool)}
    host = {"rng": np.random.default_rng(step).bit_generator.state, "env": [{"ale": b"\x00\x01" * 10}],
            "counters": {"env_steps": step * 2}}
    return train, act, host


@pytest.fixture()
def config():
    return get_config("tiny", "fake")


def test_round_trip_keep_and_order(tmp_path, config):
    calls = []
    rep = FakeReplay(calls)
    c = ckpt.Checkpointer(tmp_path, config)
    for step in (100, 200, 300, 400):
        train, act, host = _trees(step)
        assert c.save(step, train, act, host, rep)
        # replay is written before the Orbax step directory exists (committed or not)
        assert str(step) not in calls[-1][2]
    assert not c.save(400, *_trees(400), rep)  # same step again: no-op
    c.close()
    assert sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit()) == [200, 300, 400]

    c = ckpt.Checkpointer(tmp_path, config)
    train, act, host = _trees(0)
    r = c.restore(ckpt.abstract_like(train), ckpt.abstract_like(act), rep)
    want_train, want_act, want_host = _trees(400)
    assert r.step == 400 and calls[-1] == ("replay.restore", 400)
    jax.tree.map(np.testing.assert_array_equal, r.train_state, want_train)
    jax.tree.map(np.testing.assert_array_equal, r.act_state, want_act)
    assert r.train_state["params"]["b"].dtype == jnp.bfloat16
    assert r.host == want_host
    c.close()


def test_donation_after_async_save_is_safe(tmp_path, config):
    c = ckpt.Checkpointer(tmp_path, config)
    train, act, host = _trees(5)
    f = jax.jit(lambda t: jax.tree.map(lambda x: x * 2, t), donate_argnums=0)
    c.save(5, train, act, host)
    train = f(train)  # donates the saved buffers while Orbax may still write
    c.close()
    r = ckpt.Checkpointer(tmp_path, config).restore(ckpt.abstract_like(train), ckpt.abstract_like(act))
    jax.tree.map(np.testing.assert_array_equal, r.train_state, _trees(5)[0])


def _corrupt(step_dir: pathlib.Path):
    for path in step_dir.rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "train" in path.parts:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def test_corrupt_newest_falls_back(tmp_path, config, caplog):
    rep = FakeReplay([])
    c = ckpt.Checkpointer(tmp_path, config)
    for step in (100, 200):
        c.save(step, *_trees(step), rep)
    c.close()
    _corrupt(tmp_path / "checkpoints" / "200")
    c = ckpt.Checkpointer(tmp_path, config)
    train, act, _ = _trees(0)
    with caplog.at_level("WARNING"):
        r = c.restore(ckpt.abstract_like(train), ckpt.abstract_like(act), rep)
    assert r.step == 100
    assert "unreadable" in caplog.text
    assert c.steps() == [100]
    # the run can save step 200 again
    assert c.save(200, *_trees(200), rep)
    c.close()


def test_missing_replay_chunk_falls_back(tmp_path, config):
    rep = FakeReplay([])
    c = ckpt.Checkpointer(tmp_path, config)
    for step in (100, 200):
        c.save(step, *_trees(step), rep)
    c.close()
    os.remove(tmp_path / "replay" / "chunk_200")
    train, act, _ = _trees(0)
    r = ckpt.Checkpointer(tmp_path, config).restore(ckpt.abstract_like(train), ckpt.abstract_like(act), rep)
    assert r.step == 100


def test_incompatible_config_is_refused(tmp_path, config):
    c = ckpt.Checkpointer(tmp_path, config)
    c.save(100, *_trees(100))
    c.close()
    other = get_config("tiny", "fake")
    other.unlock()
    other.model.hidden = 64
    other.env.task = "continuous"
    other.num_train_steps = 999  # a resumable key: not reported
    train, act, _ = _trees(0)
    with pytest.raises(ckpt.IncompatibleCheckpointError, match="model.hidden") as err:
        ckpt.Checkpointer(tmp_path, other).restore(ckpt.abstract_like(train), ckpt.abstract_like(act))
    assert "env.task" in str(err.value) and "num_train_steps" not in str(err.value)
    (tmp_path / "config.json").write_text(json.dumps(ckpt.config_to_dict(config)))
    with pytest.raises(ckpt.IncompatibleCheckpointError, match="model.hidden"):
        ckpt.check_workdir_compatible(tmp_path, other)
    ckpt.check_workdir_compatible(tmp_path, config)
