"""Baseline policies (random, constant actions) on the evaluation protocol, and experiments/baselines.py."""
import importlib.util
import pathlib

import numpy as np
import pytest

from config_utils import tiny_config
from twister_jax.random_policy import ConstantPolicy, constant_returns

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "baselines.py"


def _script():
    spec = importlib.util.spec_from_file_location("baselines", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constant_actions_on_the_bandit():
    # the fake bandit pays 1 per step for its last action (of 8) and nothing for the others: 50-step episodes
    config = tiny_config("fake_bandit", eval_envs=2)
    res = _script().task_baselines(config, 3, [])
    assert [c["action"] for c in res["constants"]] == list(range(8))
    assert [c["mean"] for c in res["constants"]] == [0.0] * 7 + [50.0]
    assert res["constants_above_random"] == 1
    assert 0 < res["random"]["mean"] < 20 and res["random"]["length_mean"] == 50


def test_constant_continuous_action_and_bad_actions():
    config = tiny_config("fake_continuous", eval_envs=2)
    a = constant_returns(config, 0.5, 2)
    assert len(a["returns"]) == 2 and a == constant_returns(config, 0.5, 2)
    _, act = ConstantPolicy(config, -0.25).policy_step(None, None, np.zeros((3, 8, 8, 3), np.uint8), None, None)
    assert act.shape == (3, 2) and act.dtype == np.float32 and np.all(act == -0.25)
    with pytest.raises(ValueError, match=r"outside \[-1, 1\]"):
        ConstantPolicy(config, 1.5)
    with pytest.raises(ValueError, match=r"not an action index in \[0, 3\)"):
        ConstantPolicy(tiny_config("fake"), 3)


@pytest.mark.parametrize("args, message", [
    (["--tasks=pong,nope"], "unknown small config task 'nope'"),
    (["--tasks=pong", "--values=0,2"], "--values=[0.0, 2.0] must lie in [-1, 1]"),
    (["--tasks=pong", "--values=a"], "--values='a'"),
    (["--tasks=pong", "--episodes=0"], "--episodes=0"),
])
def test_bad_input(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        _script().main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
