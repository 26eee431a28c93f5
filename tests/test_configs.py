"""Every config builds, names normalise, bad names and inconsistent values are rejected by name."""
import pytest

from config_utils import get_config, load_config_module
from twister_jax.suites import ATARI_GAMES, DMC_TASKS

REQUIRED_KEYS = ["seed", "batch_size", "seq_len", "num_train_steps", "eval_every", "eval_episodes",
                 "checkpoint_every", "compute_dtype", "env.suite", "env.task"]


def _get(config, dotted):
    for part in dotted.split("."):
        config = config[part]
    return config


@pytest.mark.parametrize("game", sorted(ATARI_GAMES))
def test_every_atari_game_builds(game):
    c = get_config("atari", game)
    assert c.env.task == game and c.env.suite == "atari"
    assert c.env.num_actions == ATARI_GAMES[game]
    assert (c.batch_size, c.seq_len, c.num_train_steps, c.env_step_every) == (16, 64, 100_000, 1)
    assert (c.env.action_repeat, c.env.time_limit_frames, c.env.noop_max, c.env.sticky) == (4, 108_000, 30, 0.0)
    assert (c.eval_every, c.eval_episodes) == (10_000, 100)
    for key in REQUIRED_KEYS:
        _get(c, key)


@pytest.mark.parametrize("task", sorted(DMC_TASKS))
def test_every_dmc_task_builds(task):
    c = get_config("dmc", task)
    assert c.env.task == task and c.env.suite == "dmc"
    assert c.env.num_actions == DMC_TASKS[task][2]
    assert c.env.camera == (2 if task.startswith("quadruped") else 0)
    assert (c.env.action_repeat, c.env.num_envs, c.env.time_limit_frames) == (2, 4, 1_000)
    assert (c.num_train_steps, c.env_step_every, c.eval_every, c.eval_episodes) == (250_000, 2, 25_000, 10)


def test_twenty_six_games_and_twenty_tasks():
    assert len(ATARI_GAMES) == 26 and len(DMC_TASKS) == 20


@pytest.mark.parametrize("alias,expected", [("alien", "alien"), ("Alien", "alien"), ("ms_pacman", "ms_pacman"),
                                            ("mspacman", "ms_pacman"), ("MsPacman", "ms_pacman"),
                                            ("UpNDown", "up_n_down")])
def test_game_aliases(alias, expected):
    assert get_config("atari", alias).env.task == expected


def test_dmc_aliases():
    assert get_config("dmc", "Walker-walk").env.task == "walker_walk"
    assert get_config("dmc", "cup_catch").env.task == "ball_in_cup_catch"


def test_unknown_game_names_it_and_lists_games():
    with pytest.raises(ValueError) as err:
        get_config("atari", "pacman3000")
    assert "pacman3000" in str(err.value)
    for game in ATARI_GAMES:
        assert game in str(err.value)


def test_unknown_task_names_it_and_lists_tasks():
    with pytest.raises(ValueError) as err:
        get_config("dmc", "walker_fly")
    assert "walker_fly" in str(err.value) and "walker_walk" in str(err.value)


@pytest.mark.parametrize("variant", ["atari", "dmc", "fake", "fake_continuous", "fake_bandit"])
def test_tiny_configs_build(variant):
    c = get_config("tiny", variant)
    assert c.model.hidden < 512 and c.num_train_steps <= 1000
    with pytest.raises(ValueError, match="nope"):
        get_config("tiny", "nope")


def test_configs_are_locked_against_unknown_keys():
    c = get_config("atari", "alien")
    with pytest.raises(AttributeError):
        c.batchsize = 3
    c.batch_size = 32  # existing keys stay overridable


@pytest.mark.parametrize("key,value,message", [
    ("seq_len", 8, "seq_len"),
    ("batch_size", 0, "batch_size"),
    ("compute_dtype", "float16", "compute_dtype"),
    ("replay_on_device", "gpu", "replay_on_device"),
    ("eval_envs", 500, "eval_envs"),
    ("model.context", 100, "model.context"),
    ("env.suite", "procgen", "env.suite"),
])
def test_validate_names_the_bad_key(key, value, message):
    common = load_config_module("common")
    c = common.get_base_config()
    node = c
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    with pytest.raises(ValueError, match=message):
        common.validate(c)
