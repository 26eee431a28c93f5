"""End-to-end checks of the training program on ONE shared tiny run (configs/tiny.py:fake).

The session fixture `runs` starts an uninterrupted run (`full`) and, once that one has compiled
(persistent compilation cache), a run that is SIGKILLed right after its first checkpoint (`killed`); `killed` is then resumed with a
smaller budget (it finishes at its second checkpoint), extended to the full budget and stopped with SIGTERM
after that checkpoint, and resumed again to the end. Every check below reads these
runs (docs/interfaces.md §8: each extra process recompiles, so keep them few):

* outputs present (docs/interfaces.md §6), `evaluate` CLI on the finished run;
* a finished run is extended by a larger `num_train_steps` (and refused, with nothing written, when it has
  no checkpoint);
* the resumed run's metrics.jsonl / scores.jsonl equal the uninterrupted run's (deterministic fields);
  the resumed processes use the device copy of the replay's frames (`replay_on_device=on`, rebuilt
  from the restored replay), the uninterrupted one the host gather, so this also shows that the
  store gives the same batches;
* SIGTERM to the whole process group (trainer and env workers, as `timeout` or Ctrl-C send it) saves a
  checkpoint and exits cleanly;
* a corrupt newest checkpoint is skipped in favour of the previous one;
* the final greedy evaluation of the tiny fake run is above the random policy's. This is weak evidence
  of learning: with the actor's learning rate at 0 the same run scores as high (docs/learning_check.md,
  "What the fake environment taught us"), since the world model's changing features alone move a
  frozen policy head. The test that fails when the actor does not learn is tests/test_fake_learning.py;
* the quickstart notebook runs (nbclient) on the tiny config;
* the continuous-control path (configs/tiny.py:fake_continuous: 4 worker envs, an env step every 2
  gradient steps, bounded-Normal policy, continuous pre-fill): a short run killed after its first
  checkpoint and resumed equals an uninterrupted one. Its 3 processes run in a background thread
  that `runs` starts first, overlapping with the discrete runs.
A `slow` test learns on a real Atari game with the tiny config (`pytest -m slow`).
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from config_utils import get_config, subprocess_env
from twister_jax.envs.vector import VectorEnv

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = f"{REPO}/configs/tiny.py:fake"
WALL_FIELDS = {"wall_time", "sps", "env_sps"}
TIMEOUT = 900

ON_DEVICE = "--config.replay_on_device=on"


def _train_cmd(workdir, *extra, config=TINY):
    return [sys.executable, "-m", "twister_jax.train", f"--config={config}", f"--workdir={workdir}", *extra]


def _start(workdir, log_name, *extra, config=TINY, fast_compile=False):
    log = open(pathlib.Path(str(workdir) + f".{log_name}.log"), "w")
    # its own process group, so that a signal can go to the trainer and its env workers at once
    return subprocess.Popen(_train_cmd(workdir, *extra, config=config), cwd=REPO, env=subprocess_env(fast_compile),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log


def _log_text(workdir, log_name):
    return pathlib.Path(str(workdir) + f".{log_name}.log").read_text()


def _wait_for(predicate, proc, what, timeout=TIMEOUT):
    t0 = time.time()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc={proc.returncode}) before {what}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"timeout waiting for {what}")
        time.sleep(0.02)


def _steps(workdir):
    d = pathlib.Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def _rows(path):
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


def _det(rows):
    return [{k: v for k, v in r.items() if k not in WALL_FIELDS} for r in rows]


def _start_and_kill(full, p_full, killed, start, ckpt_step):
    """Starts the run in `killed` (`start(workdir, log_name)`) once `full` has compiled (its first log
    row: the second run then loads the train and policy steps from JAX's persistent compilation
    cache instead of compiling them too), SIGKILLs it right after checkpoint `ckpt_step` is committed
    (Orbax renames the step dir on commit) and returns its metrics rows at the kill."""
    _wait_for(lambda: bool(_safe_rows(full / "metrics.jsonl")), p_full, f"the first log row of {full}")
    return _kill_after_checkpoint(killed, start, ckpt_step)


def _kill_after_checkpoint(killed, start, ckpt_step, rows_file="metrics.jsonl"):
    """Starts the run in `killed` (`start(workdir, log_name)`), SIGKILLs it right after checkpoint
    `ckpt_step` is committed and returns the rows of `killed / rows_file` at the kill."""
    p_kill, log_kill = start(killed, "kill")
    _wait_for(lambda: ckpt_step in _steps(killed), p_kill, f"checkpoint {ckpt_step} of {killed}")
    p_kill.send_signal(signal.SIGKILL)
    p_kill.wait()
    log_kill.close()
    return _safe_rows(killed / rows_file)


@pytest.fixture(scope="session")
def runs(tmp_path_factory, request):
    if any("continuous_runs" in item.fixturenames for item in request.session.items):
        # the continuous reference run compiles (one core) while the discrete run compiles (the other)
        request.getfixturevalue("continuous_full")
    root = tmp_path_factory.mktemp("program")
    full, killed = root / "full", root / "killed"
    config = get_config("tiny", "fake")
    first_ckpt = config.checkpoint_every
    info = {"full": full, "killed": killed, "config": config}
    t0 = time.time()
    p_full, log_full = _start(full, "full")
    info["rows_at_kill"] = _start_and_kill(full, p_full, killed, _start, first_ckpt)
    # resume, then SIGTERM once a log row after the second checkpoint is written
    # the resumed processes gather their batches from the device copy of the frames
    # (config.replay_on_device, off by default on CPU): equal rows also show that it changes nothing
    # resume with a smaller budget: the run finishes at its second checkpoint (done.json) ...
    second = 2 * first_ckpt
    p_short, log_short = _start(killed, "short", ON_DEVICE, f"--config.num_train_steps={second}")
    info["short_rc"] = p_short.wait(timeout=TIMEOUT)
    log_short.close()
    info["done_short"] = _safe_json(killed / "done.json")
    # ... then the default budget extends it from there
    p_term, log_term = _start(killed, "term", ON_DEVICE)
    target = second + config.log_every
    _wait_for(lambda: any(r["step"] >= target for r in _safe_rows(killed / "metrics.jsonl")), p_term,
              f"a log row at step {target}")
    os.killpg(p_term.pid, signal.SIGTERM)  # the whole group, as `timeout`, Ctrl-C or a scheduler does
    info["term_rc"] = p_term.wait(timeout=TIMEOUT)
    log_term.close()
    info["term_log"] = _log_text(killed, "term")
    info["steps_after_term"] = _steps(killed)
    info["done_after_term"] = (killed / "done.json").exists()
    # resume to the end
    p_last, log_last = _start(killed, "last", ON_DEVICE)
    info["last_rc"] = p_last.wait(timeout=TIMEOUT)
    log_last.close()
    info["full_rc"] = p_full.wait(timeout=TIMEOUT)
    log_full.close()
    info["full_log"] = _log_text(full, "full")
    info["last_log"] = _log_text(killed, "last")
    info["wall_time"] = time.time() - t0
    assert info["full_rc"] == 0, info["full_log"][-3000:]
    assert info["last_rc"] == 0, info["last_log"][-3000:]
    return info


def _safe_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _safe_rows(path):
    try:
        return _rows(path)
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_outputs_present(runs):
    full, config = runs["full"], runs["config"]
    saved = json.loads((full / "config.json").read_text())
    assert saved["env"]["task"] == config.env.task and saved["batch_size"] == config.batch_size
    rows = _rows(full / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(config.log_every, config.num_train_steps + 1, config.log_every))
    for r in rows:
        assert {"step", "env_steps", "frames", "loss", "episodes"} <= set(r), r
        assert r["frames"] == r["env_steps"] * config.env.action_repeat
    scores = _rows(full / "scores.jsonl")
    assert [s["step"] for s in scores] == list(range(config.eval_every, config.num_train_steps + 1, config.eval_every))
    for s in scores:
        assert {"step", "env_steps", "frames", "return_mean", "return_std", "episodes", "returns",
                "length_mean"} <= set(s)
        assert s["episodes"] == len(s["returns"]) == config.eval_episodes
        assert np.isclose(s["return_mean"], np.mean(s["returns"]))
    done = json.loads((full / "done.json").read_text())
    assert done["step"] == config.num_train_steps and "wall_time" in done and "return_mean" in done
    assert _steps(full) == [100, 200, 300][-config.checkpoint_keep:]
    assert any((full / "tb").iterdir())
    assert any((full / "replay").iterdir())
    print(f"tiny run set (4 processes, 2 in parallel) wall time: {runs['wall_time']:.1f}s; "
          f"uninterrupted run: {done['wall_time']:.1f}s")


def test_resume_after_sigkill_equals_uninterrupted(runs):
    """`killed` was SIGKILLed, resumed to a smaller budget (finished), extended to the full budget
    (stopped by SIGTERM) and resumed to the end: it writes what the uninterrupted run wrote."""
    full, killed, config = runs["full"], runs["killed"], runs["config"]
    # the kill happened after some rows beyond the first checkpoint could have been written
    assert runs["rows_at_kill"], "no metrics row before the kill"
    a, b = _det(_rows(full / "metrics.jsonl")), _det(_rows(killed / "metrics.jsonl"))
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra == rb, (ra, rb)
    # the smaller budget's final evaluation is the one extra scores row
    short = 2 * config.checkpoint_every
    assert short % config.eval_every != 0
    killed_scores = _det(_rows(killed / "scores.jsonl"))
    assert [s["step"] for s in killed_scores if s["step"] == short] == [short]
    assert _det(_rows(full / "scores.jsonl")) == [s for s in killed_scores if s["step"] != short]
    assert json.loads((killed / "done.json").read_text())["step"] == config.num_train_steps
    assert "resumed from checkpoint step" in runs["last_log"]


def test_a_finished_run_is_extended_by_a_larger_budget(runs):
    config, killed = runs["config"], runs["killed"]
    short = 2 * config.checkpoint_every
    assert runs["short_rc"] == 0 and runs["done_short"]["step"] == short
    assert f"extending the finished run in {killed} from step {short}" in runs["term_log"]
    assert not runs["done_after_term"]  # the extension removed the old done.json
    resumes = json.loads((killed / "config.json").read_text())["resumes"]
    assert {"step": short, "changed": {"num_train_steps": [short, config.num_train_steps]}} in resumes


def test_a_finished_run_without_checkpoints_is_not_extended(runs, tmp_path):
    """The same budget: nothing to do; a larger one without a checkpoint, or an unreadable done.json:
    one line, exit status 2, nothing written."""
    full, config = runs["full"], runs["config"]
    same = subprocess.run(_train_cmd(full), cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert same.returncode == 0 and f"is finished at step {config.num_train_steps}" in same.stderr, same.stderr
    work = tmp_path / "no_ckpt"
    shutil.copytree(full, work, ignore=shutil.ignore_patterns("checkpoints", "replay"))
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    bigger = f"--config.num_train_steps={config.num_train_steps + 100}"
    r = subprocess.run(_train_cmd(work, bigger), cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "cannot extend" in r.stderr and "no checkpoint" in r.stderr, r.stderr
    (work / "done.json").write_text("{not json")
    before[work / "done.json"] = b"{not json"
    r = subprocess.run(_train_cmd(work, bigger), cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "done.json is unreadable" in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in work.rglob("*") if p.is_file()} == before


def test_sigterm_saves_checkpoint_and_exits_cleanly(runs):
    assert runs["term_rc"] == 0, runs["term_log"][-3000:]
    assert "Traceback" not in runs["term_log"]
    assert "checkpoint saved" in runs["term_log"]
    assert not runs["done_after_term"]
    second = 2 * runs["config"].checkpoint_every
    assert max(runs["steps_after_term"]) > second + runs["config"].log_every - 1, runs["steps_after_term"]


def test_evaluate_cli(runs, tmp_path):
    full, config = runs["full"], runs["config"]
    video = tmp_path / "episode.gif"
    r = subprocess.run([sys.executable, "-m", "twister_jax.evaluate", f"--workdir={full}",
                        f"--episodes={config.eval_episodes}", f"--video={video}"],
                       cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"return_mean", "return_std", "episodes", "returns"} <= set(out)
    assert out["episodes"] == config.eval_episodes
    # same keys and episode seeds as the run's final evaluation
    last = _rows(full / "scores.jsonl")[-1]
    assert out["returns"] == last["returns"]
    assert video.exists() and video.stat().st_size > 0


def test_world_model_probe_cli(runs, tmp_path):
    full, killed, config = runs["full"], runs["killed"], runs["config"]
    r = subprocess.run([sys.executable, "experiments/world_model_probe.py", str(full), str(killed), "--windows=3"],
                       cwd=REPO, env=subprocess_env(fast_compile=True), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])["probe"]
    frames = 3 * config.seq_len
    for row in rows:
        assert row["step"] == max(_steps(full)) and row["frames"] == frames
        assert 1 <= row["distinct_codes"] <= frames and 0 < row["top_code_share"] <= 1
        assert row["acc_con_chance"] == 1 / frames and row["mean_frame_loss"] > 0 and row["image_loss"] > 0
        # the agent's learning signal on the same frames (discrete actions: the greedy action shares too)
        assert row["reward_corr"] is None or -1 <= row["reward_corr"] <= 1
        assert row["value_std"] >= 0 and 0 < row["policy_entropy"] <= np.log(3) + 1e-6
        assert 0 < row["top_action_share"] <= 1 and 0 < row["top_action_share_imagined"] <= 1
    # the killed-and-resumed run ends with the uninterrupted run's world model and replay: the same numbers
    assert [{k: v for k, v in row.items() if k != "workdir"} for row in rows] == \
        [{k: v for k, v in rows[0].items() if k != "workdir"}] * 2
    # not a run directory: one line, exit status 2
    bad = subprocess.run([sys.executable, "experiments/world_model_probe.py", str(tmp_path)], cwd=REPO,
                         env=subprocess_env(fast_compile=True), capture_output=True, text=True, timeout=TIMEOUT)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "config.json" in bad.stderr, bad.stderr


def test_corrupt_checkpoint_falls_back(runs, tmp_path, caplog):
    from twister_jax import loop

    work = tmp_path / "copy"
    shutil.copytree(runs["full"], work)
    (work / "done.json").unlink()
    newest = max(_steps(work))
    for path in (work / "checkpoints" / str(newest) / "train").rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        trainer = loop.Trainer(runs["config"], work, progress=False)
    try:
        assert trainer.step == sorted(_steps(runs["full"]))[-2]
        assert "unreadable" in caplog.text
        assert newest not in _steps(work)
        assert all(r["step"] <= trainer.step for r in _rows(work / "metrics.jsonl"))
    finally:
        trainer.close()


def _random_policy_returns(config, episodes):
    from twister_jax import acting

    n = min(config.eval_envs, episodes)
    envs = VectorEnv(config.env, [acting.env_seed(config.seed, acting.EVAL, 10_000 + i) for i in range(n)])
    rng = np.random.default_rng(0)
    returns = []
    try:
        for j in range(episodes):
            t = envs.reset_one(j % n, seed=acting.env_seed(config.seed, acting.EVAL, j))
            total, done = 0.0, False
            while not done:
                acts, _ = acting.env_actions(config, acting.random_actions(config, rng, n))
                mask = np.zeros(n, bool)
                mask[j % n] = True
                t = envs.step(acts, mask=mask)[j % n]
                total += float(t.reward)
                done = bool(t.is_last)
            returns.append(total)
    finally:
        envs.close()
    return np.asarray(returns)


def test_learning_on_fake_env(runs):
    config = runs["config"]
    final = _rows(runs["full"] / "scores.jsonl")[-1]
    rand = _random_policy_returns(config, 16)
    # three standard errors of a random policy's mean over eval_episodes episodes
    margin = max(3.0 * rand.std() / np.sqrt(config.eval_episodes), 1.0)
    print(f"final eval return {final['return_mean']:.2f}, random policy {rand.mean():.2f} +- {rand.std():.2f}")
    assert final["return_mean"] > rand.mean() + margin, (final, rand)


def test_quickstart_notebook(runs, tmp_path, monkeypatch):
    del runs  # after the shared run, so the compilation cache is warm
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    monkeypatch.setenv("XLA_FLAGS", subprocess_env()["XLA_FLAGS"])
    monkeypatch.setenv("TWISTER_NOTEBOOK_TEST", "1")
    monkeypatch.setenv("TWISTER_NOTEBOOK_WORKDIR", str(tmp_path / "nb_run"))
    nb = nbformat.read(REPO / "experiments" / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    assert (tmp_path / "nb_run" / "done.json").exists()
    assert (tmp_path / "nb_run" / "scores.jsonl").read_text().strip()


# ------------------------------------------------------------------ continuous control (fake_continuous)
# 4 envs in worker processes, an env step every 2 gradient steps, the bounded-Normal policy, continuous
# pre-fill actions: an uninterrupted run and one SIGKILLed right after its first checkpoint, then resumed
# to the end. Few steps at the tests' compile-fast XLA level (the processes' start-up dominates).
TINY_CONTINUOUS = f"{REPO}/configs/tiny.py:fake_continuous"
C_STEPS, C_CKPT, C_LOG = 12, 6, 3
CONTINUOUS_OVERRIDES = (f"--config.num_train_steps={C_STEPS}", f"--config.checkpoint_every={C_CKPT}",
                        f"--config.log_every={C_LOG}", f"--config.eval_every={C_STEPS}", "--config.eval_episodes=2",
                        "--config.eval_envs=2", "--config.figure_every=1000", "--config.batch_size=2")


def _start_continuous(workdir, log_name):
    return _start(workdir, log_name, *CONTINUOUS_OVERRIDES, config=TINY_CONTINUOUS, fast_compile=True)


def _continuous_sequence(root, info):
    """Uninterrupted run; once it has compiled (its first log row), the killed run (loads the compiled
    steps from the persistent cache), SIGKILL after its first checkpoint, resume to the end."""
    t0 = time.time()
    full, killed = root / "full", root / "killed"
    info.update(full=full, killed=killed)
    p_full, log_full = _start_continuous(full, "full")
    try:
        info["rows_at_kill"] = _start_and_kill(full, p_full, killed, _start_continuous, C_CKPT)
        p_last, log_last = _start_continuous(killed, "last")
        info["last_rc"] = p_last.wait(timeout=TIMEOUT)
        log_last.close()
        info["full_rc"] = p_full.wait(timeout=TIMEOUT)
    finally:
        if p_full.poll() is None:
            p_full.kill()
        log_full.close()
    info["full_log"] = _log_text(full, "full")
    info["last_log"] = _log_text(killed, "last")
    info["wall_time"] = time.time() - t0


@pytest.fixture(scope="session")
def continuous_full(tmp_path_factory):
    """Starts the continuous runs in a background thread and returns at once (`runs` requests this
    first when a continuous test is selected, so they overlap with the discrete runs; on 2 cores
    the discrete runs leave a core idle while they compile and wait); `continuous_runs` joins it."""
    import threading

    root = tmp_path_factory.mktemp("program_continuous")
    info, errors = {}, []

    def target():
        try:
            _continuous_sequence(root, info)
        except BaseException as exc:  # noqa: BLE001 - re-raised by `continuous_runs`
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return {"thread": thread, "info": info, "errors": errors}


@pytest.fixture(scope="session")
def continuous_runs(continuous_full):
    continuous_full["thread"].join(timeout=3 * TIMEOUT)
    assert not continuous_full["thread"].is_alive(), "continuous runs did not finish"
    if continuous_full["errors"]:
        raise continuous_full["errors"][0]
    info = continuous_full["info"]
    assert info["full_rc"] == 0, info["full_log"][-3000:]
    assert info["last_rc"] == 0, info["last_log"][-3000:]
    return info


def test_continuous_resume_after_sigkill_equals_uninterrupted(continuous_runs):
    full, killed = continuous_runs["full"], continuous_runs["killed"]
    saved = json.loads((full / "config.json").read_text())
    assert saved["env"]["task"] == "continuous" and saved["env"]["num_envs"] == 4 and saved["env_step_every"] == 2
    rows = _rows(full / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(C_LOG, C_STEPS + 1, C_LOG))
    # one batched step of the 4 envs every 2 gradient steps
    assert all(b["env_steps"] - a["env_steps"] == 4 * (b["step"] // 2 - a["step"] // 2)
               for a, b in zip(rows, rows[1:])), [(r["step"], r["env_steps"]) for r in rows]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["policy_ent"]) for r in rows)
    scores = _rows(full / "scores.jsonl")
    assert [s["step"] for s in scores] == [C_STEPS] and len(scores[0]["returns"]) == 2
    # resumed from the checkpoint the kill left: the same rows as the uninterrupted run
    assert continuous_runs["rows_at_kill"], "no metrics row before the kill"
    assert f"resumed from checkpoint step {C_CKPT}" in continuous_runs["last_log"], continuous_runs["last_log"][-2000:]
    assert _det(_rows(killed / "metrics.jsonl")) == _det(rows)
    assert _det(_rows(killed / "scores.jsonl")) == _det(scores)
    assert json.loads((killed / "done.json").read_text())["step"] == C_STEPS
    print(f"continuous runs (3 processes, 2 in parallel) wall time: {continuous_runs['wall_time']:.1f}s")


@pytest.mark.slow
def test_learning_on_real_atari(tmp_path):
    """Tiny config on Breakout: the greedy policy beats the random policy clearly (slow: ~CPU hour)."""
    import csv

    workdir = tmp_path / "breakout"
    cfg = f"{REPO}/configs/tiny.py:atari"
    steps = 20_000
    r = subprocess.run([sys.executable, "-m", "twister_jax.train", f"--config={cfg}", f"--workdir={workdir}",
                        "--config.env.task=breakout", f"--config.num_train_steps={steps}",
                        f"--config.eval_every={steps}", "--config.checkpoint_every=5000",
                        "--config.figure_every=5000", "--config.log_every=500", "--config.eval_episodes=8",
                        "--config.env.time_limit_frames=8000"],
                       cwd=REPO, env=subprocess_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    final = _rows(workdir / "scores.jsonl")[-1]
    with open(REPO / "twister_jax" / "data" / "atari100k_scores.csv") as f:
        rows = {row["game"]: row for row in csv.DictReader(line for line in f if not line.startswith("#"))}
    random_score = float(rows["breakout"]["random"])
    assert final["return_mean"] > 2.0 * random_score + 1.0, (final, random_score)


class _CountingAgent:
    """Host-only stand-in for the acting half of the agent: always action 0, counts resets."""

    def __init__(self, num_actions):
        self.a = num_actions
        self.resets = 0

    def init_act_state(self, n):
        return np.zeros(n)

    def reset_act_state(self, act_state, mask):
        self.resets += int(np.sum(mask))
        return act_state

    def policy_step(self, params, act_state, image, is_first, key, *, greedy):
        assert greedy
        return act_state, np.eye(self.a, dtype=np.float32)[np.zeros(len(image), int)]


def test_evaluation_quota_and_seeds():
    """Each eval env plays its fixed quota, every episode is finished, seeds are per episode."""
    import jax
    from twister_jax import acting

    config = get_config("tiny", "fake")
    assert acting.eval_quotas(10, 4) == [3, 3, 2, 2] and sum(acting.eval_quotas(100, 10)) == 100
    for n_envs in (1, 3):
        envs = VectorEnv(config.env, list(range(n_envs)), num_workers=0)
        agent = _CountingAgent(config.env.num_actions)
        try:
            res = acting.run_episodes(agent, None, config, envs, 5, jax.random.key(0))
        finally:
            envs.close()
        assert len(res["returns"]) == 5 and all(x == config.env.time_limit_frames for x in res["lengths"])
        assert agent.resets == n_envs + (5 - n_envs)  # initial clear + one per later episode
        if n_envs == 1:
            first = res["returns"]
        else:  # the same episode seeds, whatever the number of envs (episode order may differ)
            assert sorted(res["returns"]) == sorted(first)


# ------------------------------------------------------------------ faults on a copy of the finished run
def _copy_unfinished(runs, tmp_path, name):
    work = tmp_path / name
    shutil.copytree(runs["full"], work)
    (work / "done.json").unlink()
    return work


def _cli(work, *extra):
    return subprocess.run(_train_cmd(work, *extra), cwd=REPO, env=subprocess_env(fast_compile=True), capture_output=True, text=True,
                          timeout=TIMEOUT)


def _tree_snapshot(path):
    return {str(p.relative_to(path)): p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file()}


def test_missing_replay_stops_with_named_error_then_resumes_when_allowed(runs, tmp_path):
    work = _copy_unfinished(runs, tmp_path, "noreplay")
    newest = max(_steps(work))
    shutil.rmtree(work / "replay")
    before = _tree_snapshot(work)
    r = _cli(work)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr[-3000:]
    assert f"checkpoints/{newest}" in lines[0] and f"state_{newest:012d}.json" in lines[0]
    assert "--allow_empty_replay" in lines[0]
    assert _tree_snapshot(work) == before  # no checkpoint moved aside, no row dropped, nothing written
    assert not (work / "checkpoints_corrupt").exists()
    # explicitly allowed: the newest train state is kept, the replay refills, the run finishes
    r = _cli(work, "--allow_empty_replay")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from checkpoint step {newest}" in r.stderr and "empty replay" in r.stderr
    assert json.loads((work / "done.json").read_text())["step"] == runs["config"].num_train_steps
    assert _rows(work / "metrics.jsonl") == _rows(runs["full"] / "metrics.jsonl")


def test_refused_config_writes_nothing(runs, tmp_path):
    work = _copy_unfinished(runs, tmp_path, "refused")
    (work / "config.json").unlink()
    before = _tree_snapshot(work)
    r = _cli(work, "--config.model.hidden=64")
    assert r.returncode == 2, r.stderr[-3000:]
    assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [
        ln for ln in r.stderr.splitlines() if ln.startswith("error:")], r.stderr[-3000:]
    assert "model.hidden" in r.stderr
    assert _tree_snapshot(work) == before and not (work / "config.json").exists()


def test_precision_change_on_resume_is_printed_and_recorded(runs, tmp_path):
    work = _copy_unfinished(runs, tmp_path, "bf16")
    r = _cli(work, "--config.compute_dtype=bfloat16")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "compute_dtype: 'float32' -> 'bfloat16'" in r.stderr
    saved = json.loads((work / "config.json").read_text())
    step = max(_steps(runs["full"]))
    assert saved["compute_dtype"] == "bfloat16"
    assert saved["resumes"] == [{"step": step, "changed": {"compute_dtype": ["float32", "bfloat16"]}}]
