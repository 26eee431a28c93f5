"""Many seeds in one process (issue 14, docs/architecture.md §9): a group of R = 2 runs equals solo runs.

* exactness (discrete and continuous fake tiny configs): the group `--config.num_seeds=2` (seed 0)
  and the solo runs with seeds 0 and 1, all in this process: each `seed_<s>/` holds a solo run's
  files (the same config.json), the same `metrics.jsonl` counts, and the float metrics within rtol
  1e-4 / atol 1e-6: the vmapped step reorders float sums (batched matmuls, grouped convolutions), so
  the parameters drift apart by float32 rounding (measured: worst relative metric difference
  ~1.3e-5 over 40 steps, ~3e-5 absolute on parameters after 3 steps; values near zero ~1e-10
  absolute). Discrete: the `scores.jsonl` returns are equal (the greedy actions are the same);
  continuous: the actions carry the rounding into the returns, equal within rtol 1e-4 (measured
  ~3e-5 relative);
* the evaluate CLI's library form on the group reproduces each run's last scores row;
* resume: the group started with the CLI, SIGKILLed right after its first checkpoint and resumed
  writes, for every run, the same rows as the uninterrupted group (exactly), also when the resumed
  part gathers its batches from the device copy of the frames (`replay_on_device=on`), and when it was
  first resumed to a budget ending at that checkpoint (finished) and then extended to the full one;
* devices: the group's train and policy steps on 8 emulated CPU devices (mesh runs=2 x data=4) equal,
  run by run, the solo steps of seeds 0 and 1 on one device and the group on one device (tolerance
  as tests/test_sharding_train.py), in fresh-compile subprocesses.
Mixing up the runs (a swapped key or replay) fails each of them.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from config_utils import tiny_config
from test_program import WALL_FIELDS, _det, _kill_after_checkpoint, _rows, _start

REPO = pathlib.Path(__file__).resolve().parents[1]
COUNT_FIELDS = {"step", "env_steps", "frames", "episodes", "replay_windows"}

SETS = {
    "fake": dict(num_train_steps=30, checkpoint_every=15, log_every=5, eval_every=15),
    "fake_continuous": dict(num_train_steps=12, checkpoint_every=12, log_every=3, eval_every=12),
}
COMMON = dict(eval_episodes=2, eval_envs=2, figure_every=1000, batch_size=2)


def _overrides(variant):
    return {**COMMON, **SETS[variant]}


def _config(variant, **extra):
    return tiny_config(variant, **{**_overrides(variant), **extra})


def _run_set(variant, root):
    """Solo runs of seeds 0 and 1 (one agent) and the group of 2, in this process."""
    from twister_jax import agent as agent_lib
    from twister_jax import loop

    solo_agent = agent_lib.make_agent(_config(variant))
    for seed in (0, 1):
        loop.run(_config(variant, seed=seed), root / f"solo{seed}", agent=solo_agent, progress=False)
    group_config = _config(variant, num_seeds=2)
    group_agent = agent_lib.make_agent(group_config)
    result = loop.run(group_config, root / "group", agent=group_agent, progress=False)
    return {"root": root, "config": group_config, "agent": group_agent, "result": result}


@pytest.fixture(scope="module")
def discrete(tmp_path_factory):
    return _run_set("fake", tmp_path_factory.mktemp("seeds_discrete"))


@pytest.fixture(scope="module")
def continuous(tmp_path_factory):
    return _run_set("fake_continuous", tmp_path_factory.mktemp("seeds_continuous"))


def _assert_rows_close(solo, group, what):
    assert [r["step"] for r in solo] == [r["step"] for r in group], what
    for a, b in zip(solo, group):
        assert set(a) == set(b), (what, set(a) ^ set(b))
        for k in set(a) - WALL_FIELDS:
            if k in COUNT_FIELDS or not isinstance(a[k], float):
                assert a[k] == b[k], (what, a["step"], k, a[k], b[k])
            else:
                np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-6, err_msg=f"{what} step {a['step']} {k}")


def _check_group_equals_solo(s):
    root = s["root"]
    group = root / "group"
    saved = json.loads((group / "config.json").read_text())
    assert saved["num_seeds"] == 2 and saved["seed"] == 0
    done = json.loads((group / "done.json").read_text())
    assert done["seeds"] == [0, 1] and done["step"] == s["config"].num_train_steps
    assert sorted(p.name for p in (group / "replay").iterdir()) == ["seed_0", "seed_1"]
    for seed in (0, 1):
        solo, run = root / f"solo{seed}", group / f"seed_{seed}"
        assert {p.name for p in run.iterdir()} == {"config.json", "metrics.jsonl", "scores.jsonl", "tb", "done.json"}
        assert json.loads((run / "config.json").read_text()) == json.loads((solo / "config.json").read_text())
        assert json.loads((run / "done.json").read_text())["step"] == s["config"].num_train_steps
        a, b = _rows(solo / "scores.jsonl"), _rows(run / "scores.jsonl")
        assert a and len(a) == len(b)
        for ra, rb in zip(a, b):
            if s["config"].env.task == "discrete":  # discrete actions: the same episodes, returns equal
                assert ra["returns"] == rb["returns"], (seed, ra, rb)
            else:  # continuous actions carry the parameters' float differences into the returns
                np.testing.assert_allclose(rb["returns"], ra["returns"], rtol=1e-4, atol=1e-6)
        _assert_rows_close(_rows(solo / "metrics.jsonl"), _rows(run / "metrics.jsonl"), f"seed {seed}")
    # the two runs really differ (a group of copies would pass the checks above for seed 0 only)
    assert _rows(group / "seed_0/metrics.jsonl")[-1]["loss"] != _rows(group / "seed_1/metrics.jsonl")[-1]["loss"]


def test_group_equals_solo_runs_discrete(discrete):
    _check_group_equals_solo(discrete)


def test_group_equals_solo_runs_continuous(continuous):
    _check_group_equals_solo(continuous)


def test_evaluate_group(discrete):
    from twister_jax import evaluate

    group = discrete["root"] / "group"
    out = evaluate.evaluate(group, agent=discrete["agent"])
    assert [o["seed"] for o in out] == [0, 1]
    for o in out:
        assert o["returns"] == _rows(group / f"seed_{o['seed']}" / "scores.jsonl")[-1]["returns"]
    one = evaluate.evaluate(group, agent=discrete["agent"], seed=1)
    assert one == out[1]
    with pytest.raises(ValueError, match=r"--seed=5 is not a run of .*; allowed: 0, 1"):
        evaluate.check_inputs(group, seed=5)


def test_probe_reads_a_run_of_a_group(discrete):
    """The world-model probe of run `seed_s` of a group reads that run's parameters and replay from the
    group's checkpoint: it equals the solo run's probe (float rounding aside), and the two runs differ."""
    from twister_jax import probe

    root = discrete["root"]
    found = {s: probe.probe_run(root / "group" / f"seed_{s}") for s in (0, 1)}
    for s in (0, 1):
        solo = probe.probe_run(root / f"solo{s}")
        assert found[s]["step"] == solo["step"] and found[s]["mean_frame_loss"] == solo["mean_frame_loss"]
        for k in ("image_loss", "post_entropy", "kl"):
            np.testing.assert_allclose(found[s][k], solo[k], rtol=1e-4, err_msg=f"seed {s} {k}")
    assert found[0]["image_loss"] != found[1]["image_loss"]


def test_group_resume_after_sigkill_equals_uninterrupted(discrete):
    from twister_jax import loop

    full, killed = discrete["root"] / "group", discrete["root"] / "group_killed"
    flags = [f"--config.{k}={v}" for k, v in _overrides("fake").items()] + ["--config.num_seeds=2"]
    first = SETS["fake"]["checkpoint_every"]
    _kill_after_checkpoint(killed, lambda w, name: _start(w, name, *flags, fast_compile=True), first,
                           rows_file="seed_0/metrics.jsonl")
    assert not (killed / "done.json").exists()
    # resumed with the device copy of the frames (rebuilt from both restored replays) and a budget that
    # ends at the checkpoint (the group finishes there), then extended to the full budget: the same rows
    loop.run(_config("fake", num_seeds=2, replay_on_device="on", num_train_steps=first), killed,
             agent=discrete["agent"], progress=False)
    assert [json.loads((d / "done.json").read_text())["step"] for d in (killed, killed / "seed_0", killed / "seed_1")] \
        == [first] * 3
    loop.run(_config("fake", num_seeds=2, replay_on_device="on"), killed, agent=discrete["agent"], progress=False)
    for seed in (0, 1):
        for name in ("metrics.jsonl", "scores.jsonl"):
            a, b = _rows(full / f"seed_{seed}" / name), _rows(killed / f"seed_{seed}" / name)
            assert a and _det(a) == _det(b), (seed, name)
    assert json.loads((killed / "done.json").read_text())["seeds"] == [0, 1]


def test_aggregate_scores_reads_a_packed_group(discrete, tmp_path, capsys):
    """experiments/aggregate_scores.py on a suite tree holding the real tiny group's workdir as a pack
    (`ROOT/<task>/seeds_0-1/`, with its checkpoints/, replay/, config.json, done.json beside the runs'
    seed_<s>/): both runs count, with their own final scores. The fake env is no suite task, so each
    run's config.json is relabelled as Atari Pong (the only change to the group's files)."""
    import importlib.util
    import shutil

    root = tmp_path / "suite"
    pack = root / "pong" / "seeds_0-1"
    shutil.copytree(discrete["root"] / "group", pack)
    for seed in (0, 1):
        path = pack / f"seed_{seed}" / "config.json"
        cfg = json.loads(path.read_text())
        cfg["env"].update(suite="atari", task="pong")
        path.write_text(json.dumps(cfg))
    spec = importlib.util.spec_from_file_location("aggregate_scores", REPO / "experiments" / "aggregate_scores.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main([f"--root={root}", "--suite=atari100k", "--reps=200", "--no_plots"]) == 0
    assert "1 tasks" in capsys.readouterr().out
    import csv

    finals = [_rows(pack / f"seed_{s}" / "scores.jsonl")[-1]["return_mean"] for s in (0, 1)]
    with open(root / "report" / "per_task.csv") as f:
        (row,) = [r for r in csv.DictReader(f) if r["task"] == "pong"]
    assert int(row["seeds"]) == 2 and float(row["mean"]) == pytest.approx(np.mean(finals)), (row, finals)


# ------------------------------------------------------------------ 8 emulated devices (fresh compiles)
def _step_results(group: bool, steps: int = 2) -> dict:
    """Run i's params, last metrics and one sampled action after `steps` train steps of the group
    (`run<i>/...`) or of solo agents for seeds 0 and 1 (`solo<i>/...`), from fixed batches."""
    import jax
    from test_agent import smooth_batch
    from twister_jax import agent as agent_lib

    out = {}
    base = [jax.random.key(s) for s in (0, 1)]
    cfg = tiny_config("fake", batch_size=8)
    batches = [smooth_batch(cfg, seed=3 + i) for i in range(2)]
    n = cfg.env.num_envs
    images = np.stack([np.full((n, 64, 64, 3), 40 + 90 * i, np.uint8) for i in range(2)])
    firsts = np.ones((2, n), bool)

    def record(prefix, state, metrics, action):
        for k, v in jax.device_get(metrics).items():
            out[f"{prefix}/metric/{k}"] = np.asarray(v)
        out[f"{prefix}/params"] = np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(state.params))])
        out[f"{prefix}/action"] = np.asarray(action)

    if group:
        agent = agent_lib.make_agent(tiny_config("fake", batch_size=8, num_seeds=2))
        assert agent.num_runs == 2
        keys = jax.numpy.stack(base)
        state = agent.init_state(keys)
        batch = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
        for _ in range(steps):
            state, metrics = agent.train_step(state, batch, keys)
        _, action = agent.policy_step(state.params, agent.init_act_state(n), images, firsts, keys)
        for i in range(2):
            record(f"run{i}", agent_lib.take_run(state, i), agent_lib.take_run(metrics, i), action[i])
        out["devices"] = np.asarray(agent.mesh.devices.size)
        return out
    solo = agent_lib.make_agent(cfg)
    for i in range(2):
        state = solo.init_state(base[i])
        for _ in range(steps):
            state, metrics = solo.train_step(state, batches[i], base[i])
        _, action = solo.policy_step(state.params, solo.init_act_state(n), images[i], firsts[i], base[i])
        record(f"solo{i}", state, metrics, action)
    return out


DEVICE_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np, jax
    jax.config.update("jax_default_matmul_precision", "highest")
    jax.config.update("jax_threefry_partitionable", True)
    assert jax.device_count() == 8, jax.devices()
    from test_seeds import _step_results
    np.savez({out_path!r}, **_step_results(group=True))
    print("DONE")
""")


def test_group_on_eight_devices_equals_one(tmp_path):
    """The group on 8 emulated devices (mesh runs=2 x data=4, a fresh-compile subprocess: multi-device
    executables from the persistent cache can deadlock, tests/test_sharding_train.py) equals, run by
    run, solo agents of seeds 0 and 1 on this process's one device. (The group on one device equals
    the solo runs by the exactness tests above.)"""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=8"])
    out_path = tmp_path / "eight.npz"
    proc = subprocess.Popen([sys.executable, "-c", DEVICE_SCRIPT.format(tests=str(REPO / "tests"), out_path=str(out_path))],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    one = _step_results(group=False)  # meanwhile, here (persistent cache)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0 and "DONE" in stdout, stderr[-4000:]
    eight = np.load(out_path)
    assert int(eight["devices"]) == 8
    for i in range(2):
        keys = [k for k in one if k.startswith(f"solo{i}/")]
        assert any("/metric/" in k for k in keys)
        for k in keys:
            np.testing.assert_allclose(eight[k.replace("solo", "run", 1)], one[k], rtol=2e-4, atol=2e-5, err_msg=k)
    assert not np.allclose(eight["run0/params"], eight["run1/params"])
