"""experiments/device_check.py: the reduced version (what a CPU runs) prints its table and JSON line.

One subprocess (about a minute on 2 CPU cores, less with a warm compile cache): the tiny train step
(benchmark_train_step.run_row) alone and as a group of 5 seeds, the tiny policy step, 200 loop steps
of the null agent on Alien at the full Atari config, and the projection. The full version needs a
GPU/TPU and is not run here.
"""
import json
import os
import subprocess
import sys

from conftest import REPO_ROOT


def test_reduced_device_check_prints_table_and_json_line():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    res = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "device_check.py"), "--reduced",
                          "--loop_steps", "200"],
                         capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    fields = json.loads(lines[-1])["device_check"]
    assert "failed" not in fields and "skipped" not in fields, fields
    assert fields["mode"] == "reduced" and fields["jax"] and fields["device"]
    (row,) = fields["train_step"]
    assert row["size"] == "tiny" and row["dtype"] == "float32" and row["step_ms"] > 0 and row["compile_s"] > 0
    assert fields["policy_ms"] > 0 and fields["peak_MiB"] > 0
    split = fields["host_floor_split_ms"]
    assert set(split) >= {"env", "add", "sample", "h2d", "log", "act", "train", "rest", "total"}
    assert split["env"] > 0 and split["sample"] > 0 and split["total"] >= split["env"] + split["sample"]
    assert fields["projected_100k_host_floor_min"] == fields["host_floor_ms"] * 100_000 / 1e3 / 60
    assert [r["num_seeds"] for r in fields["seeds"]] == [1, 5] and all(r["ms_per_seed"] > 0 for r in fields["seeds"])
    table = "\n".join(lines[:-1])
    for name in ("| device |", "| jax / jaxlib |", "| compile (tiny, float32) |", "| train step (tiny, float32) |",
                 "| policy step latency |", "| loop host floor (null agent) |", "| peak memory |",
                 "| projected Atari 100k host floor |", "| seeds per process: 1 |", "| seeds per process: 5 |"):
        assert name in table, (name, table)


def test_bad_budget_is_one_line_and_exit_2():
    res = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "device_check.py"), "--budget_s", "0"],
                         capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["error: --budget_s 0.0: must be positive"]
    assert res.stdout == ""
