"""The world-model probe's statistics (twister_jax/probe.py) and experiments/world_model_fit.py's arguments;
the probe command on a trained run is tested in test_program.py."""
import importlib.util
import pathlib

import numpy as np
import pytest

from config_utils import tiny_config

from twister_jax import probe

REPO = pathlib.Path(__file__).resolve().parents[1]


def _logits(codes, classes=4):
    """(N, S) integer modes -> (N, S, classes) logits whose argmax is that mode."""
    codes = np.asarray(codes)
    return np.eye(classes)[codes] * 3.0 - 1.0


def test_one_code_for_every_frame():
    stats = probe.code_stats(_logits([[1, 2, 0]] * 5))
    assert stats == {"distinct_codes": 1, "top_code_share": 1.0}


def test_codes_count_whole_latents_not_single_variables():
    # every variable takes two values over the frames, but only three whole codes occur
    codes = [[0, 0], [0, 0], [0, 1], [1, 0]]
    assert probe.code_stats(_logits(codes)) == {"distinct_codes": 3, "top_code_share": 0.5}


def test_mean_frame_loss_units():
    black = np.zeros((2, 2, 3), np.uint8)
    white = np.full((2, 2, 3), 255, np.uint8)
    assert probe.mean_frame_loss(np.stack([black, black])) == 0.0
    # mean frame 0 after preprocessing; each of the 12 values is 0.5 away: 12 * 0.25 per frame
    assert np.isclose(probe.mean_frame_loss(np.stack([black, white])), 3.0)


def _fit_script():
    spec = importlib.util.spec_from_file_location("world_model_fit", REPO / "experiments" / "world_model_fit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_overrides_set_existing_keys_and_refuse_unknown_ones(capsys):
    fit = _fit_script()
    config = tiny_config()
    changed = fit.with_overrides(config, [("model.dim_cnn", 8), ("optim.world_model.lr", 3e-4)])
    assert (changed.model.dim_cnn, changed.optim.world_model.lr) == (8, 3e-4)
    assert config.model.dim_cnn != 8  # the run's config is left as it was
    for bad in [("model.nope", 1), ("nope.dim_cnn", 1), ("model.dim_cnn.x", 1), ("model.dim_cnn", "abc")]:
        with pytest.raises(SystemExit) as exc:
            fit.with_overrides(config, [bad])
        assert exc.value.code == 2 and bad[0] in capsys.readouterr().err


def test_fit_bad_arguments_exit_2(tmp_path, capsys):
    fit = _fit_script()
    (tmp_path / "config.json").write_text("{}")
    for argv in [[str(tmp_path), "--set=model.dim_cnn"], [str(tmp_path), "--set=model.dim_cnn=abc"],
                 [str(tmp_path), "--steps=0"], [str(tmp_path / "missing")]]:
        with pytest.raises(SystemExit) as exc:
            fit.parse_args(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, (argv, err)


def test_a_group_dir_is_refused_with_its_runs_named(tmp_path):
    import json

    from twister_jax.checkpoint import config_to_dict

    group = tmp_path / "seeds_0-1"
    for seed in (1, 5):
        (group / f"seed_{seed}").mkdir(parents=True)
        (group / f"seed_{seed}" / "config.json").write_text(json.dumps(config_to_dict(tiny_config(seed=seed))))
    (group / "config.json").write_text(json.dumps(config_to_dict(tiny_config(num_seeds=2))))
    with pytest.raises(ValueError, match="holds a group of 2 runs; probe one of them: .*seed_0, .*seed_1"):
        probe.load_run(group)
    with pytest.raises(ValueError, match="has seed 5, not a run of the group"):
        probe.load_run(group / "seed_5")
    # one run of the group is read from the group's checkpoints (tests/test_seeds.py probes a real one)
    with pytest.raises(FileNotFoundError, match="no readable checkpoint in .*seeds_0-1/checkpoints"):
        probe.load_run(group / "seed_1")
