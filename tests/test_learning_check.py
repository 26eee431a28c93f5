"""The learning check's report (`twister_jax.reports.learning`, `experiments/learning_check.py`).

* the statistics: Welch's one-sided test and the bootstrap interval on known samples;
* a run tree with two seeds of a task that beats random and one that does not: summary.json fields,
  report.md, curves.png, the verdicts, the control and the world-model probe (`--report_only`, no
  training; the baselines and probes written beforehand, as the command caches them);
* the random-policy baseline plays the evaluation protocol (episode seeds, lengths) of the fake env;
* bad input: one `error:` line, exit status 2, nothing written.
"""
import importlib.util
import json
import pathlib

import numpy as np
import pytest

from config_utils import tiny_config
from twister_jax.reports import learning
from twister_jax.random_policy import initial_returns, random_returns

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "learning_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("learning_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(argv):
    """experiments/learning_check.py's `main(argv)`, in this process."""
    return _module().main(argv)


def test_welch_and_bootstrap():
    rng = np.random.default_rng(0)
    high, low = rng.normal(10.0, 1.0, 30), rng.normal(8.0, 1.0, 30)
    t, p = learning.welch_greater(high, low)
    assert t > 5 and p < 1e-6
    _, p_rev = learning.welch_greater(low, high)
    assert p_rev > 0.999                                   # one-sided: "lower" is not "greater"
    lo, hi = learning.bootstrap_diff(high, low)
    assert 1.0 < lo < 2.0 < hi < 3.0
    assert learning.welch_greater([1.0], low)[1] == 1.0   # too few values: no evidence


def _write_run(d: pathlib.Path, seed: int, finals, steps=(100, 200), finished=True):
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"seed": seed}))
    rows = [{"step": s, "env_steps": s, "frames": 4 * s, "return_mean": float(np.mean(finals)) * s / steps[-1],
             "returns": [float(x) * s / steps[-1] for x in finals]} for s in steps]
    (d / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        (d / "done.json").write_text(json.dumps({"step": steps[-1], "wall_time": 12.0}))


def test_report_from_a_run_tree(tmp_path, capsys):
    out = tmp_path / "lc"
    rng = np.random.default_rng(1)
    for seed in (0, 1):
        _write_run(out / "runs" / "boxing" / f"seed_{seed}", seed, rng.normal(20.0, 3.0, 10))
        _write_run(out / "runs" / "krull" / "seeds_0-1" / f"seed_{seed}", seed, rng.normal(1.0, 3.0, 10))  # a group
    _write_run(out / "runs" / "krull" / "seed_2", 2, [50.0] * 10, finished=False)   # unfinished: left out
    (out / "random").mkdir(parents=True)
    for task in ("boxing", "krull"):
        (out / "random" / f"{task}.json").write_text(json.dumps(
            {"returns": list(rng.normal(1.0, 3.0, 30)), "lengths": [100] * 30}))
    (out / "initial").mkdir()
    for task, seed, level in (("boxing", 0, 10.0), ("boxing", 1, 30.0), ("krull", 0, 0.0), ("krull", 1, 0.0),
                              ("krull", 2, 0.0)):   # the untrained policies' greedy episodes (the control)
        (out / "initial" / f"{task}_seed_{seed}.json").write_text(json.dumps(
            {"returns": [level] * 10, "lengths": [100] * 10}))
    (out / "probe").mkdir()
    for task, seed, image in (("boxing", 0, 5.0), ("boxing", 1, 30.0), ("krull", 0, 40.0), ("krull", 1, 40.0)):
        signal = {"reward_corr": 0.25, "reward_pred_at_reward": 1.0, "reward_pred_elsewhere": 0.06, "value_std": 1.42,
                  "policy_entropy": 0.9, "policy_entropy_imagined": 0.8} if (task, seed) == ("boxing", 0) else {}
        (out / "probe" / f"{task}_seed_{seed}.json").write_text(json.dumps(   # each final world model's probe
            {"step": 200, "frames": 256, "distinct_codes": 7 if image < 20 else 1, "top_code_share": 0.5,
             "image_loss": image, "mean_frame_loss": 20.0, "acc_con": 0.1, "acc_con_chance": 1 / 256, **signal}))
    argv = [f"--out={out}", "--tasks=boxing,krull", "--seeds=0,1,2", "--random_episodes=30", "--report_only"]
    assert _check(argv + ["--env_steps=boxing=200,krull=200"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    by_task = {e["task"]: e for e in summary["tasks"]}
    for e in by_task.values():
        assert {"task", "seeds", "env_steps", "final_mean", "random_mean", "p_value"} <= set(e)
    assert by_task["boxing"]["seeds"] == [0, 1] and by_task["boxing"]["greedy_episodes"] == 20
    assert by_task["boxing"]["p_value"] < 1e-6 and by_task["boxing"]["learned"]
    assert by_task["boxing"]["env_steps"] == 200
    assert by_task["krull"]["p_value"] > 0.05 and not by_task["krull"]["learned"]
    assert by_task["krull"]["seeds_unfinished"] == [2] and by_task["krull"]["seeds"] == [0, 1]
    assert by_task["boxing"]["wall_time_s"] == 24.0 and by_task["krull"]["wall_time_s"] == 12.0  # a group: once
    assert by_task["boxing"]["initial_per_seed"] == {"0": 10.0, "1": 30.0}
    assert by_task["boxing"]["seeds_above_initial"] == 1           # seed 1's final (~20) is below its initial 30
    assert (out / "curves.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "| boxing | 2 | 200 |" in report and "(initial 30.00)" in report
    assert "| 2/2 | 1/2 | yes |" in report     # above random, above their untrained policy (seed 1 is not), verdict
    # the world-model probe: one of boxing's world models beats the mean frame, none of krull's
    assert by_task["boxing"]["probe_per_seed"]["0"]["distinct_codes"] == 7
    assert (by_task["boxing"]["seeds_seeing"], by_task["krull"]["seeds_seeing"]) == (1, 0)
    assert "seed 0: 7/256 codes, image 5.0 vs 20.0" in report and "1/2 world models beat the mean frame" in report
    # the agent's learning signal where the probe has it (probes cached before it have none)
    assert "acc_con 0.100 vs 0.004, reward corr 0.25, critic std 1.42; seed 1:" in report
    assert by_task["boxing"]["probe_per_seed"]["0"]["value_std"] == 1.42
    assert report.count("reward corr") == 1 and "value_std" not in by_task["krull"]["probe_per_seed"]["0"]
    assert "- krull:" in report.split("World model per seed")[1] and "reached without seeing" in report
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["learning_check"][0]["task"] == "boxing"
    # a larger budget: the runs done at step 200 are not finished for it (the check would extend them)
    assert _check(argv + ["--env_steps=boxing=400,krull=200"]) == 0
    by_task = {e["task"]: e for e in json.loads((out / "summary.json").read_text())["tasks"]}
    assert by_task["boxing"]["seeds_unfinished"] == [0, 1] and by_task["boxing"]["seeds"] == []
    assert by_task["krull"]["seeds"] == [0, 1]


def test_initial_policy_baseline_is_the_seeds_untrained_agent():
    config = tiny_config("fake", eval_envs=2, seed=3)
    a = initial_returns(config, 4)
    assert len(a["returns"]) == 4 and a["lengths"] == [50] * 4
    assert a == initial_returns(config, 4)                            # the seed's initial state, deterministic


def test_random_baseline_plays_the_evaluation_protocol():
    config = tiny_config("fake", eval_envs=2, seed=3)
    a = random_returns(config, 5)
    assert len(a["returns"]) == 5 and a["lengths"] == [50] * 5       # 50-frame episodes of the fake env
    assert a == random_returns(config, 5)                             # seeded: the same episodes again
    # 3 actions, reward 1 for the right one: a random policy earns about 50 / 3 per episode
    assert 8 < np.mean(a["returns"]) < 26


@pytest.mark.parametrize("args, message", [
    (["--tasks=boxing,nope"], "unknown small config task 'nope'"),
    (["--tasks=boxing", "--env_steps=krull=10"], "--env_steps names ['krull']"),
    (["--tasks=boxing", "--env_steps=boxing=ten"], "--env_steps item 'boxing=ten'"),
    (["--seeds=0,x"], "--seeds='0,x'"),
    (["--tasks=boxing", "--set=model.nope=1"], "--set model.nope: no such config key"),
    (["--tasks=boxing", "--set=model.dim_cnn"], "--set='model.dim_cnn' is not KEY=VALUE"),
])
def test_bad_input(tmp_path, capsys, args, message):
    out = tmp_path / "lc"
    with pytest.raises(SystemExit) as exc:
        _check([f"--out={out}", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_set_overrides_reach_training_and_the_controls(tmp_path, capsys):
    lc = _module()
    args = lc.parse_args([f"--out={tmp_path}", "--tasks=boxing,cartpole_swingup", "--seeds=0",
                          "--set=model.dim_cnn=8", "--set=model.stoch=16"])
    for entry in lc.plan(args):                  # every training command carries the overrides as absl flags
        assert entry["cmd"][-2:] == ["--config.model.dim_cnn=8", "--config.model.stoch=16"], entry["cmd"]
    config = lc.small_config("boxing", args.overrides)          # the config the untrained control evaluates
    assert (config.model.dim_cnn, config.model.stoch, config.model.discrete) == (8, 16, 8)
    # an --out made with other overrides (or none) is refused, not mixed into one report
    (tmp_path / "runs").mkdir()
    for argv, theirs in ((["--set=model.dim_cnn=8"], "{}"), ([], "{'model.dim_cnn': 8}")):
        if theirs != "{}":
            (tmp_path / "overrides.json").write_text(json.dumps({"model.dim_cnn": 8}))
        with pytest.raises(SystemExit) as exc:
            _check([f"--out={tmp_path}", "--tasks=boxing", "--report_only", *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and f"overrides {theirs}" in err[0], err


def test_train_all_tells_done_from_stopped_and_failed(tmp_path, capsys):
    """A training process that exits 0 without reaching the budget was stopped by a signal (resumable);
    only a done.json at the budget is "done"; a nonzero exit is a failure."""
    import sys as _sys

    lc = _module()
    write_done = "import json, sys; open(sys.argv[1], 'w').write(json.dumps({'step': 10}))"
    entries = [{"task": "t", "name": name, "workdir": tmp_path / name, "cmd": [_sys.executable, "-c", *code],
                "steps": 10, "log": tmp_path / "logs" / f"{name}.log"}
               for name, code in (("stopped", ["pass"]), ("done", [write_done, str(tmp_path / "done" / "done.json")]),
                                  ("bad", ["raise SystemExit(3)"]))]
    (tmp_path / "done").mkdir()
    failures = lc.train_all(entries, parallel=1)
    out = capsys.readouterr().out
    assert "stopped (checkpoint saved; the same command resumes it): t/stopped" in out
    assert "done: t/done" in out and "FAILED (exit 3" in out and len(failures) == 1 and "t/bad" in failures[0]
