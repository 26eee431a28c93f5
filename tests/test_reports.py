"""Score reports and the suite launcher on synthetic run trees with hand-computed answers.

Bootstrap reps are kept small (100-200) for speed; the point estimates do not depend on them.
"""
import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from twister_jax.reports import aggregate as agg
from twister_jax.reports import report as report_lib
from twister_jax.reports import runs as runs_lib
from twister_jax.reports import scores as scores_lib
from twister_jax.reports import synthetic

REPO = pathlib.Path(__file__).resolve().parents[1]
REPS = 200

# Hand-made HNS per game and seed. Per-game means 0.5, 3.0, 0.5, 2.5:
#   mean = 6.5 / 4 = 1.625; median = (0.5 + 2.5) / 2 = 1.5;
#   IQM of the 8 values (0, .5, .5, 1, 1.5, 2, 3.5, 4) = mean(.5, 1, 1.5, 2) = 1.25;
#   games above human (mean HNS > 1): amidar, asterix = 2.
KNOWN_HNS = {"alien": [0.0, 1.0], "amidar": [2.0, 4.0], "assault": [0.5, 0.5], "asterix": [1.5, 3.5]}


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raw(game, hns):
    ref = scores_lib.atari_reference()
    return ref.random[game] + hns * (ref.human[game] - ref.random[game])


@pytest.fixture
def atari_tree(tmp_path):
    """KNOWN_HNS runs plus one of each kind that must be left out."""
    root = tmp_path / "atari"
    for game, values in KNOWN_HNS.items():
        for seed, h in enumerate(values):
            synthetic.write_run(root, game, seed, _raw(game, h), evals=3)
    synthetic.write_run(root, "pong", 0, 10.0, finished=False)                      # unfinished
    synthetic.write_run(root, "walker_walk", 0, 900.0, suite="dmc")                 # other suite
    synthetic.write_run(root, "boxing", 0, 50.0, env_suite="fake")                  # other suite
    (synthetic.write_run(root, "breakout", 0, 5.0) / "scores.jsonl").write_text("")  # no evaluation
    (root / "notes").mkdir()                                                         # not a task
    (root / "_suite_logs").mkdir()                                                   # launcher's, silent
    return root


def test_reference_table_and_hns():
    ref = scores_lib.atari_reference()
    assert set(ref.random) == set(scores_lib.ATARI_100K_GAMES) and len(ref.random) == 26
    assert len(scores_lib.DMC_TASKS) == 20
    # docs/original.md §11.3 values, not the mixed table some code carries (Assault 1496, MsPacman 15693, Breakout 31.8).
    assert (ref.random["assault"], ref.human["assault"]) == (222.4, 742.0)
    assert ref.human["ms_pacman"] == 6951.6 and ref.human["breakout"] == 30.5
    assert ref.random["pong"] == -20.7 and ref.human["private_eye"] == 69571.3
    assert scores_lib.human_normalized("alien", 227.8) == pytest.approx(0.0)
    assert scores_lib.human_normalized("Alien", 7127.7) == pytest.approx(1.0)
    assert scores_lib.human_normalized("pong", -3.05) == pytest.approx(0.5)
    np.testing.assert_allclose(scores_lib.human_normalized("MsPacman", [307.3, 6951.6]), [0.0, 1.0])
    # No TWISTER per-game numbers ship (docs/original.md §11.2: unconfirmed).
    assert "TWISTER" not in ref.agents
    assert all(len(ref.published[a]) == 26 for a in ref.agents)


def test_published_per_game_scores_reproduce_confirmed_aggregates():
    """docs/original.md §11.1 confirmed means: IRIS 1.046, DIAMOND 1.46, from the agents' own papers."""
    ref = scores_lib.atari_reference()
    mean = lambda a: np.mean([scores_lib.human_normalized(g, s) for g, s in ref.published[a].items()])  # noqa: E731
    assert mean("IRIS") == pytest.approx(1.046, abs=5e-4)
    assert mean("DIAMOND") == pytest.approx(1.46, abs=5e-3)
    pub = {(p.agent, p.metric): p.value for p in scores_lib.published_aggregates()}
    assert pub[("TWISTER", "mean")] == 1.62 and ("TWISTER", "median") not in pub


def test_interval_estimates_known_answers():
    matrix = np.array([KNOWN_HNS[g] for g in KNOWN_HNS]).T  # (2 runs, 4 tasks)
    est = agg.interval_estimates(matrix, reps=REPS, seed=0)
    assert est["mean"].point == pytest.approx(1.625)
    assert est["median"].point == pytest.approx(1.5)
    assert est["iqm"].point == pytest.approx(1.25)
    for m in agg.METRICS:
        assert est[m].lo <= est[m].point <= est[m].hi
        assert est[m].lo < est[m].hi  # seeds differ within tasks, so the interval has width
    assert agg.games_above_human(matrix) == 2
    assert agg.interval_estimates(matrix, reps=REPS, seed=0) == est  # seeded: reproducible
    one_run = agg.interval_estimates(matrix[:1], reps=50, seed=0)
    assert one_run["mean"].lo == one_run["mean"].point == one_run["mean"].hi == pytest.approx(1.0)


def test_report_atari(atari_tree, tmp_path):
    out = tmp_path / "out"
    rep = report_lib.make_report(atari_tree, "atari100k", out, reps=REPS, seed=0)
    ours = rep.aggregate_rows[0]
    assert (ours["tasks"], ours["runs_per_task"]) == (4, 2)
    assert ours["mean"] == pytest.approx(1.625) and ours["median"] == pytest.approx(1.5)
    assert ours["iqm"] == pytest.approx(1.25) and ours["above_human"] == 2
    for m in agg.METRICS:
        assert ours[f"{m}_lo"] <= ours[m] <= ours[f"{m}_hi"]
    rows = {r["task"]: r for r in rep.per_task}
    assert list(rows) == list(KNOWN_HNS)
    assert rows["amidar"]["hns"] == pytest.approx(3.0) and rows["amidar"]["seeds"] == 2
    assert rows["amidar"]["mean"] == pytest.approx(_raw("amidar", 3.0))
    assert rows["amidar"]["std"] == pytest.approx(np.std([_raw("amidar", 2.0), _raw("amidar", 4.0)], ddof=1))
    assert rows["alien"]["STORM"] == 983.6 and rows["alien"]["env_steps"] == "30000"
    excluded = {e.name: e.reason for e in rep.tree.excluded}
    assert excluded["pong/seed_0"].startswith("unfinished")
    assert excluded["walker_walk/seed_0"].startswith("other suite")
    assert excluded["boxing/seed_0"].startswith("other suite")
    assert "no evaluation" in excluded["breakout/seed_0"]
    assert "notes" in excluded and "_suite_logs" not in excluded
    assert "pong" in rep.tree.missing_tasks and "alien" not in rep.tree.missing_tasks
    assert len(rep.tree.missing_tasks) == 22
    # Files: Markdown names every exclusion; CSVs hold the numbers; PNGs are PNGs.
    md = (out / "report.md").read_text()
    for name in ("pong/seed_0", "walker_walk/seed_0", "boxing/seed_0", "breakout/seed_0", "`up_n_down`"):
        assert name in md
    assert "| amidar | 2 |" in md and "TWISTER (paper)" in md
    per_task_csv = (out / "per_task.csv").read_text().splitlines()
    assert per_task_csv[0].startswith("task,seeds,mean,std,env_steps,random,human,hns,hns_std,SimPLe")
    assert len(per_task_csv) == 1 + 4
    assert len((out / "final_scores.csv").read_text().splitlines()) == 1 + 8
    assert (out / "aggregates.csv").read_text().startswith("agent,kind,tasks,runs_per_task,mean,mean_lo")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aggregates"][0]["iqm"] == pytest.approx(1.25)
    for png in ("aggregates.png", "per_task.png", "learning_curves.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_unequal_seed_counts_are_named(atari_tree, tmp_path):
    synthetic.write_run(atari_tree, "alien", 2, _raw("alien", 9.0))
    rep = report_lib.make_report(atari_tree, "atari100k", tmp_path / "o", reps=REPS, plots=False)
    assert rep.dropped_from_aggregate == ["alien/seed_2"]
    assert rep.aggregate_rows[0]["mean"] == pytest.approx(1.625)  # aggregate keeps seeds 0, 1
    assert {r["task"]: r["seeds"] for r in rep.per_task}["alien"] == 3  # the table keeps every run
    assert "alien/seed_2" in rep.markdown


def test_report_dmc_and_suite_inference(tmp_path):
    root = tmp_path / "dmc"
    for seed, (a, b) in enumerate([(100.0, 300.0), (200.0, 500.0)]):
        synthetic.write_run(root, "walker_walk", seed, a, suite="dmc")
        synthetic.write_run(root, "cheetah_run", seed, b, suite="dmc")
    assert report_lib.infer_suite(root) == "dmc"
    rep = report_lib.make_report(root, None, tmp_path / "o", reps=REPS, plots=False)
    ours = rep.aggregate_rows
    assert len(ours) == 1 and ours[0]["mean"] == pytest.approx(275.0)   # (150 + 400) / 2
    assert ours[0]["median"] == pytest.approx(275.0)
    assert ours[0]["iqm"] == pytest.approx(250.0)                       # mean(200, 300)
    assert "hns" not in rep.per_task[0]
    synthetic.write_run(root, "alien", 0, 500.0)
    assert report_lib.infer_suite(root) == "dmc"  # the majority; the Atari run is reported, left out
    for seed in range(3):  # 4 Atari runs, 4 DMC runs: a tie
        synthetic.write_run(root, "pong", seed, 5.0)
    with pytest.raises(ValueError, match="cannot infer"):
        report_lib.infer_suite(root)
    with pytest.raises(ValueError, match="no finished atari100k run"):
        report_lib.make_report(_only_unfinished(tmp_path), "atari100k", tmp_path / "o2", reps=REPS)


def _only_unfinished(tmp_path):
    root = tmp_path / "unfinished"
    synthetic.write_run(root, "alien", 0, 500.0, finished=False)
    return root


def test_aggregate_scores_cli_prints_table(atari_tree, tmp_path, capsys):
    cli = _load_script("aggregate_scores")
    out = tmp_path / "cli"
    assert cli.main([f"--root={atari_tree}", f"--out={out}", "--reps=100", "--no_plots"]) == 0
    text = capsys.readouterr().out
    assert "| ours (twister_jax) | 4 | 2 | 1.625 [" in text
    assert "pong/seed_0`: unfinished" in text and "walker_walk/seed_0`: other suite" in text
    assert (out / "report.md").exists()
    assert cli.main([f"--root={_only_unfinished(tmp_path)}", "--suite=atari100k"]) == 1


def test_run_suite_dry_run_and_skip(tmp_path, capsys):
    suite = _load_script("run_suite")
    root = tmp_path / "suite"
    assert suite.main(["--suite=atari100k", "--seeds=0,1", f"--root={root}", "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 52
    assert lines[0] == (f"python -m twister_jax.train --config=configs/atari.py:alien "
                        f"--workdir={root.resolve()}/alien/seed_0 --config.seed=0")
    synthetic.write_run(root, "alien", 0, 1.0)                    # finished: skipped
    synthetic.write_run(root, "pong", 1, 1.0, finished=False)     # unfinished: resumed, same command
    assert suite.main(["--suite=atari100k", "--seeds=0,1", f"--root={root}", "--dry_run",
                       "--extra=--config.compute_dtype=bfloat16"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 51 and not any("alien/seed_0 " in l for l in lines)
    assert any(l.endswith("pong/seed_1 --config.seed=1 --config.compute_dtype=bfloat16") for l in lines)
    assert "skip alien/seed_0" in captured.err
    assert suite.main(["--suite=dmc", "--seeds=0-2", f"--root={root}", "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 60 and "configs/dmc.py:acrobot_swingup" in lines[0]


def test_run_suite_spreads_runs_over_gpus(tmp_path, capsys):
    suite = _load_script("run_suite")
    code = "import os, sys; open(sys.argv[1], 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])"
    todo = [suite.Job("t", (i,), tmp_path / f"seed_{i}", ("python", "-c", code, str(tmp_path / f"gpu{i}")), False)
            for i in range(2)]
    todo.append(suite.Job("bad", (0,), tmp_path / "seed_0", ("python", "-c", "raise SystemExit(3)"), False))
    failed = suite.execute(todo, tmp_path, parallel=2, gpus=["4", "7"], poll_s=0.05)
    assert failed == ["bad/seed_0"]
    assert {(tmp_path / f"gpu{i}").read_text() for i in range(2)} == {"4", "7"}
    assert (tmp_path / "_suite_logs" / "t_seed_0.log").exists()
    # exit status 0 without done.json: a run stopped by a signal (resumable), not one that finished
    out = capsys.readouterr().out
    assert "[stopped (checkpoint saved; the same command resumes it)] t/seed_0" in out and "[done]" not in out
    (tmp_path / "seed_1" / "done.json").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "seed_1" / "done.json").write_text(json.dumps({"step": 10}))
    from twister_jax.rundir import exit_status
    assert exit_status(0, tmp_path / "seed_1") == "done" and exit_status(0, tmp_path / "seed_1", 20) != "done"


def test_reports_import_no_jax():
    code = ("import sys; import twister_jax.reports.report, twister_jax.reports.plots; "
            "from twister_jax.reports import aggregate; aggregate.metric_functions(); "
            "assert not any(m == 'jax' or m.startswith('jax.') for m in sys.modules), 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_run_suite_finds_gpus(tmp_path, monkeypatch):
    suite = _load_script("run_suite")
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-a)'\n"
                    "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-b)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    assert suite.visible_gpus() == ["0", "1"]
    assert suite.visible_gpus("3,5") == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,6")
    assert suite.visible_gpus() == ["2", "6"]
    env = suite.run_env(3, ["2", "6"], parallel=4)  # 2 runs per GPU
    assert env["CUDA_VISIBLE_DEVICES"] == "6" and env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.45"
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in suite.run_env(0, ["2", "6"], parallel=2)
    assert suite.run_env(0, [], parallel=2)["CUDA_VISIBLE_DEVICES"] == "2,6"  # no GPUs: env untouched


def test_run_suite_packs_seeds(tmp_path, capsys):
    suite = _load_script("run_suite")
    assert suite.seed_packs([0, 1, 2, 3, 4, 5, 6], 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert suite.seed_packs([0, 1, 5, 6, 7], 5) == [[0, 1], [5, 6, 7]]     # a group's seeds are consecutive
    assert suite.seed_packs([2, 3], 1) == [[2], [3]]
    root = tmp_path / "suite"
    synthetic.write_run(root, "boxing", 0, 1.0, group="seeds_0-2")
    (root / "boxing" / "seeds_0-2" / "done.json").write_text("{}")            # the group finished: skipped
    assert suite.main(["--suite=atari100k", "--seeds=0-6", f"--root={root}", "--seeds_per_process=3",
                       "--tasks=boxing,krull", "--dry_run"]) == 0
    captured = capsys.readouterr()
    r = root.resolve()
    assert captured.out.splitlines() == [
        f"python -m twister_jax.train --config=configs/atari.py:boxing --workdir={r}/boxing/seeds_3-5 "
        "--config.seed=3 --config.num_seeds=3",
        f"python -m twister_jax.train --config=configs/atari.py:boxing --workdir={r}/boxing/seed_6 --config.seed=6",
        f"python -m twister_jax.train --config=configs/atari.py:krull --workdir={r}/krull/seeds_0-2 "
        "--config.seed=0 --config.num_seeds=3",
        f"python -m twister_jax.train --config=configs/atari.py:krull --workdir={r}/krull/seeds_3-5 "
        "--config.seed=3 --config.num_seeds=3",
        f"python -m twister_jax.train --config=configs/atari.py:krull --workdir={r}/krull/seed_6 --config.seed=6"]
    assert "skip boxing/seeds_0-2" in captured.err and "6 processes (14 runs): 5 to start" in captured.err
    # a budget above the finished group's step: it is extended (started again), not skipped
    (root / "boxing" / "seeds_0-2" / "done.json").write_text(json.dumps({"step": 100}))
    for steps, started in ((100, 5), (101, 6)):
        assert suite.main(["--suite=atari100k", "--seeds=0-6", f"--root={root}", "--seeds_per_process=3",
                           "--tasks=boxing,krull", "--dry_run", f"--extra=--config.num_train_steps={steps}"]) == 0
        assert f"{started} to start or resume" in capsys.readouterr().err


def test_run_suite_slurm_script(tmp_path, capsys):
    """The job-array script runs array task i's exact command (quoting kept), logs per task, skips a
    finished task; the fake `python` on PATH records its arguments instead of training."""
    suite = _load_script("run_suite")
    root, script = tmp_path / "suite", tmp_path / "job.sbatch"
    extra = "--config.log_every=7 --config.env.task='two words'"
    assert suite.main(["--suite=dmc", "--seeds=0-3", f"--root={root}", "--seeds_per_process=2",
                       "--tasks=walker_walk", "--launcher=slurm", f"--slurm_script={script}", f"--extra={extra}",
                       "--slurm_max_running=4", "--slurm_partition=gpu", "--slurm_setup=export TWISTER_SETUP=ran"]) == 0
    assert f"sbatch {script}" in capsys.readouterr().out
    text = script.read_text()
    for line in ("#SBATCH --array=0-1%4", "#SBATCH --partition=gpu", "#SBATCH --requeue",
                 "#SBATCH --signal=B:TERM@300", "#SBATCH --gres=gpu:1"):
        assert line in text.splitlines()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text("#!/bin/sh\necho \"$TWISTER_SETUP\" > \"$ARGS_OUT.setup\"\n"
                                    "for a in \"$@\"; do echo \"$a\"; done > \"$ARGS_OUT\"\n")
    (bin_dir / "python").chmod(0o755)
    jobs = suite.plan("dmc", [0, 1, 2, 3], root.resolve(), ["walker_walk"], ("--config.log_every=7",
                      "--config.env.task=two words"), per_process=2)
    for i, job in enumerate(jobs):
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": str(i),
               "ARGS_OUT": str(tmp_path / f"args{i}")}
        subprocess.run(["bash", str(script)], env=env, check=True)
        assert (tmp_path / f"args{i}").read_text().splitlines() == list(job.argv[1:])
        assert (tmp_path / f"args{i}.setup").read_text().strip() == "ran"      # --slurm_setup ran first
        log = root / "_suite_logs" / f"walker_walk_seeds_{2 * i}-{2 * i + 1}.log"
        assert f"array task {i}" in log.read_text()
    job = jobs[1]
    job.workdir.mkdir(parents=True)
    (job.workdir / "done.json").write_text("{}")
    (tmp_path / "args1").unlink()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": "1", "ARGS_OUT": str(tmp_path / "args1")}
    out = subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True, text=True).stdout
    assert "is finished" in out and not (tmp_path / "args1").exists()
    # with a budget in the commands the training command decides (a finished run may be extended)
    assert suite.main(["--suite=dmc", "--seeds=0-3", f"--root={root}", "--seeds_per_process=2",
                       "--tasks=walker_walk", "--launcher=slurm", f"--slurm_script={script}",
                       "--extra=--config.num_train_steps=50"]) == 0
    assert "done.json" not in script.read_text() and "--config.num_train_steps=50" in script.read_text()


def test_report_reads_packed_groups(tmp_path):
    root = tmp_path / "atari"
    for seed in (0, 1, 2):
        synthetic.write_run(root, "boxing", seed, 10.0 * (seed + 1), group="seeds_0-2")
    synthetic.write_run(root, "boxing", 3, 40.0)                        # a solo run beside the group
    synthetic.write_run(root, "boxing", 1, 99.0, group="seeds_1-2")    # seed 1 again: counted once
    (root / "boxing" / "seeds_0-2" / "checkpoints").mkdir()             # the group's own files
    assert report_lib.infer_suite(root) == "atari100k"
    tree = runs_lib.scan(root, "atari100k")
    assert [(r.seed, r.final_return) for r in tree.runs["boxing"]] == [(0, 10.0), (1, 20.0), (2, 30.0), (3, 40.0)]
    excluded = {e.name: e.reason for e in tree.excluded}
    assert excluded["boxing/seeds_1-2/seed_1"] == "seed 1 is already counted from boxing/seeds_0-2/seed_1"
    assert not any("checkpoints" in name for name in excluded)
