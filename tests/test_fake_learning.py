"""The agent learns: a short run on the fake bandit task ends with a greedy policy far above random.

`configs/tiny.py:fake_bandit` (twister_jax/envs/fake.py, task `bandit`): 8 actions, one of which
always pays 1 per step, 50 steps an episode. A uniform random policy earns 50/8 = 6.25 per episode;
the greedy policy after 600 gradient steps earns the maximum, 50, in every evaluation episode
(49.0 on average already at step 300).

What the run exercises end to end: env -> replay -> the world model's action-conditioned reward ->
imagination with the actor's own actions -> lambda returns and advantages -> the REINFORCE actor
update -> greedy evaluation. It fails when the actor does not learn: with the actor's learning rate
set to 0 (same seed) the greedy return is 0.9 at step 300 and 23.6 at step 600, every episode below
26 (docs/learning_check.md, "A learning test that can fail"). The threshold, 45 in every final
episode, is 90% of the maximum: well above that frozen actor and far above random.

One training subprocess (about 40 s on an idle 2-core CPU, compile included; longer beside other
tests), at the user's XLA flags like the end-to-end runs of tests/test_program.py.
"""
import json
import pathlib
import subprocess
import sys

import numpy as np

from config_utils import get_config, subprocess_env
from twister_jax.random_policy import random_returns

REPO = pathlib.Path(__file__).resolve().parents[1]
THRESHOLD = 45.0


def test_greedy_policy_learns_the_bandit(tmp_path):
    env = subprocess_env()
    workdir = tmp_path / "bandit"
    cmd = [sys.executable, "-m", "twister_jax.train", f"--config={REPO}/configs/tiny.py:fake_bandit",
           f"--workdir={workdir}", "--config.checkpoint_every=1000", "--config.figure_every=1000"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    scores = [json.loads(line) for line in (workdir / "scores.jsonl").read_text().splitlines() if line.strip()]
    final = scores[-1]
    config = get_config("tiny", "fake_bandit")
    assert final["step"] == config.num_train_steps and len(final["returns"]) == config.eval_episodes
    rand = np.asarray(random_returns(config, 16)["returns"])
    print(f"greedy returns by step: {[(s['step'], s['return_mean']) for s in scores]}; "
          f"random {rand.mean():.2f} +- {rand.std():.2f}")
    assert rand.mean() < 12.0, rand  # the task pays 1 of 8 actions: random earns ~6.25
    assert min(final["returns"]) >= THRESHOLD, final["returns"]
