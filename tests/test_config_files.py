"""`twister_jax.config_files.load_config`: the loader the experiments/ scripts use instead of tests/config_utils."""
import pathlib

import pytest

from config_utils import get_config
from twister_jax.config_files import load_config

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name,arg", [("tiny", "fake"), ("atari", "alien"), ("dmc", "walker_walk")])
def test_load_config_matches_the_file_arg_selection(name, arg):
    assert load_config(CONFIGS / f"{name}.py", arg).to_dict() == get_config(name, arg).to_dict()


def test_load_config_default_arg_and_missing_file(tmp_path):
    assert load_config(CONFIGS / "atari.py").to_dict() == get_config("atari", "alien").to_dict()
    assert load_config(CONFIGS / "tiny.py", "atari").to_dict() != load_config(CONFIGS / "tiny.py", "fake").to_dict()
    with pytest.raises(FileNotFoundError, match="nowhere.py"):
        load_config(tmp_path / "nowhere.py", "x")
