"""`config.overlap_acting` (ours, off by default; docs/architecture.md §7): the env step after a gradient
step acts with the params from before that step and runs in the env worker during it.

* determinism and exact resume: a run SIGKILLed right after its first checkpoint and resumed writes the
  same metrics and scores rows as an uninterrupted run (separate processes, so also two runs agree);
* the schedule: after pre-fill, each training policy call comes before its gradient step (the
  original order: after it), with the same counts (env steps, episodes, replay windows). At this size
  one gradient step rarely changes a sampled action, so the rows of the two orders may be equal.
The tiny fake config (one env, which then steps in a worker process), 30 gradient steps.
"""
import dataclasses
import json

import pytest

from config_utils import tiny_config
from test_program import _det, _kill_after_checkpoint, _rows, _start

RUN = dict(num_train_steps=30, checkpoint_every=15, log_every=5, eval_every=15, eval_episodes=2, eval_envs=2,
           figure_every=1000, batch_size=2)
COUNTS = ("step", "env_steps", "frames", "episodes", "replay_windows")


def _config(overlap):
    return tiny_config("fake", overlap_acting=overlap, **RUN)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from twister_jax import agent as agent_lib
    from twister_jax import loop

    root = tmp_path_factory.mktemp("overlap")
    agent = agent_lib.make_agent(_config(True))  # the switch does not change the agent
    loop.run(_config(True), root / "full", agent=agent, progress=False)
    flags = [f"--config.{k}={v}" for k, v in RUN.items()] + ["--config.overlap_acting=True"]
    _kill_after_checkpoint(root / "killed", lambda w, name: _start(w, name, *flags, fast_compile=True),
                           RUN["checkpoint_every"])
    assert not (root / "killed" / "done.json").exists()
    loop.run(_config(True), root / "killed", agent=agent, progress=False)
    calls = {}
    for name, overlap in (("order_overlap", True), ("order_plain", False)):
        calls[name] = []
        loop.run(_config(overlap), root / name, agent=_recording(agent, calls[name]), progress=False)
    return {"root": root, "calls": calls}


def _recording(agent, calls):
    """The agent, noting "P" for each training policy call (not greedy evaluation) and "T" for each
    gradient step."""
    def policy_step(*args, greedy=False, **kw):
        if not greedy:
            calls.append("P")
        return agent.policy_step(*args, greedy=greedy, **kw)

    def train_step(*args):
        calls.append("T")
        return agent.train_step(*args)
    return dataclasses.replace(agent, policy_step=policy_step, train_step=train_step)


def test_overlap_resume_after_sigkill_equals_uninterrupted(runs):
    root = runs["root"]
    for name in ("metrics.jsonl", "scores.jsonl"):
        a, b = _rows(root / "full" / name), _rows(root / "killed" / name)
        assert a and _det(a) == _det(b), name
    assert json.loads((root / "killed" / "config.json").read_text())["overlap_acting"] is True


def test_overlap_acts_before_each_gradient_step_with_the_same_counts(runs):
    over, plain = "".join(runs["calls"]["order_overlap"]), "".join(runs["calls"]["order_plain"])
    steps = RUN["num_train_steps"]
    prefill = plain.index("T")
    assert prefill > 0 and over == "P" * prefill + "PT" * steps and plain == "P" * prefill + "TP" * steps
    root = runs["root"]
    rows = {k: _rows(root / k / "metrics.jsonl") for k in ("order_overlap", "order_plain")}
    assert [[r[k] for k in COUNTS] for r in rows["order_overlap"]] == [[r[k] for k in COUNTS] for r in rows["order_plain"]]
