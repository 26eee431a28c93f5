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
        path = pathlib.Path(directory, f"chunk_{step}")
        if not path.exists():
            raise FileNotFoundError(f"missing replay file {path}")
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


def test_missing_replay_of_intact_checkpoint_is_named_not_skipped(tmp_path, config):
    rep = FakeReplay([])
    c = ckpt.Checkpointer(tmp_path, config)
    for step in (100, 200):
        c.save(step, *_trees(step), rep)
    c.close()
    os.remove(tmp_path / "replay" / "chunk_200")
    train, act, _ = _trees(0)
    # falling back to step 100 (or to step 0) would silently throw away work: it stops, naming things
    with pytest.raises(ckpt.ReplayUnavailableError) as err:
        ckpt.Checkpointer(tmp_path, config).restore(ckpt.abstract_like(train), ckpt.abstract_like(act), rep)
    msg = str(err.value)
    assert str(tmp_path / "checkpoints" / "200") in msg and "chunk_200" in msg and "--allow_empty_replay" in msg
    assert ckpt.Checkpointer(tmp_path, config).steps() == [100, 200]  # nothing moved aside
    # allowed explicitly: the newest checkpoint's train state, the replay left as it was (empty)
    r = ckpt.Checkpointer(tmp_path, config).restore(ckpt.abstract_like(train), ckpt.abstract_like(act), rep,
                                                    allow_empty_replay=True)
    assert r.step == 200 and not r.replay_restored
    jax.tree.map(np.testing.assert_array_equal, r.train_state, _trees(200)[0])


def test_checkpoint_holds_no_pickle_and_never_unpickles(tmp_path, config, monkeypatch):
    import pickle

    c = ckpt.Checkpointer(tmp_path, config)
    train, act, host = _trees(100)
    c.save(100, train, act, host, FakeReplay([]))
    c.close()
    step_dir = tmp_path / "checkpoints" / "100"
    files = [p for p in step_dir.rglob("*") if p.is_file()]
    assert files and not any(p.read_bytes()[:1] == b"\x80" for p in files), "a pickle in the checkpoint"
    assert not any(b"blob" in p.read_bytes() for p in files if p.name == "metadata")

    class Payload:  # unpickling this would create the marker file
        def __reduce__(self):
            return (pathlib.Path.touch, (tmp_path / "pwned",))

    crafted = pickle.dumps(Payload())
    (step_dir / "host" / "blob.pkl").write_bytes(crafted)
    (step_dir / "host_arrays" / "state.pickle").write_bytes(crafted)
    (tmp_path / "replay" / "chunk_100.npz").write_bytes(crafted)

    def refuse(*args, **kwargs):
        raise AssertionError("restore unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    train0, act0, _ = _trees(0)
    r = ckpt.Checkpointer(tmp_path, config).restore(ckpt.abstract_like(train0), ckpt.abstract_like(act0),
                                                    FakeReplay([]))
    assert r.step == 100 and r.host == host
    assert not (tmp_path / "pwned").exists()


def test_old_pickled_host_state_is_refused_not_loaded(tmp_path, config):
    import orbax.checkpoint as ocp

    train, act, _ = _trees(100)
    manager = ocp.CheckpointManager((tmp_path / "checkpoints").absolute(), item_names=("train", "act", "host"))
    manager.save(100, args=ocp.args.Composite(
        train=ocp.args.StandardSave(train), act=ocp.args.StandardSave(act),
        host=ocp.args.JsonSave({"step": 100, "config": ckpt.config_to_dict(config), "meta": {}, "blob": "gASVAA=="})))
    manager.wait_until_finished()
    manager.close()
    with pytest.raises(ckpt.IncompatibleCheckpointError, match="pickled host state"):
        ckpt.Checkpointer(tmp_path, config).restore(ckpt.abstract_like(train), ckpt.abstract_like(act))
    assert (tmp_path / "checkpoints" / "100").exists()  # not moved aside as damage


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
    # a removed config.json does not hide the run: the checkpoint's own config is compared
    (tmp_path / "config.json").unlink()
    with pytest.raises(ckpt.IncompatibleCheckpointError, match="model.hidden"):
        ckpt.check_workdir_compatible(tmp_path, other)
    ckpt.check_workdir_compatible(tmp_path, config)


def test_config_json_records_resumable_changes(tmp_path, config, capsys):
    from twister_jax import rundir

    assert rundir.write_config(tmp_path, config, 0) == {}
    bf16 = get_config("tiny", "fake")
    bf16.unlock()
    bf16.compute_dtype = "bfloat16"
    assert rundir.write_config(tmp_path, bf16, 200) == {"compute_dtype": ["float32", "bfloat16"]}
    assert "compute_dtype: 'float32' -> 'bfloat16'" in capsys.readouterr().err
    rundir.write_config(tmp_path, bf16, 300)  # nothing changed: nothing added
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["compute_dtype"] == "bfloat16"
    assert saved["resumes"] == [{"step": 200, "changed": {"compute_dtype": ["float32", "bfloat16"]}}]
    ckpt.check_workdir_compatible(tmp_path, bf16)  # the record is not a config difference
