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


def test_reward_stats_follow_the_real_rewards():
    real = np.array([0.0, 0, 0, 50, 0, 0, 0, 0, 50, 0])
    exact = probe.reward_stats(real, real)
    assert np.isclose(exact["reward_corr"], 1.0) and exact["reward_pred_at_reward"] == 50.0
    assert exact["reward_pred_elsewhere"] == 0.0 and exact["reward_real_mean"] == 10.0
    base_rate = probe.reward_stats(np.full(10, 0.07), real)      # a head at the base rate: no signal
    assert base_rate["reward_corr"] is None and base_rate["reward_pred_at_reward"] == 0.07
    weak = probe.reward_stats(np.where(real > 0, 1.0, 0.06), real)
    assert (weak["reward_pred_at_reward"], weak["reward_pred_elsewhere"]) == (1.0, 0.06)
    dense = probe.reward_stats(np.arange(10.0), np.arange(10.0) + 1)   # rewards everywhere: no split
    assert dense["reward_pred_at_reward"] is None and np.isclose(dense["reward_corr"], 1.0)


def test_agent_probe_reads_the_reward_head_critic_and_policy_it_is_given():
    """The agent part of the probe on a fresh tiny agent: the zero-initialised reward and value heads
    predict 0 everywhere (a flat critic); heads moved to one bin predict that bin's value on every frame
    (no correlation); the policy's numbers stay within their ranges and do not depend on the heads."""
    import jax
    import jax.numpy as jnp

    from twister_jax import agent as agent_lib

    config = tiny_config("fake")
    spec = agent_lib.AgentSpec.from_config(config)
    params = agent_lib.init_train_state(spec, jax.random.key(0)).params
    rng = np.random.default_rng(0)
    b, t = 2, int(config.seq_len)
    batch = {"image": rng.integers(0, 255, (b, t, 64, 64, 3), dtype=np.uint8),
             "action": np.eye(3, dtype=np.float32)[rng.integers(0, 3, (b, t))],
             "reward": (rng.random((b, t)) < 0.2).astype(np.float32),
             "is_first": np.zeros((b, t), bool), "is_terminal": np.zeros((b, t), bool)}
    run = probe.make_probe(spec, agent=True)
    out = run(params, batch, jax.random.key(1))
    assert abs(out["reward_pred_mean"]) < 1e-6 and abs(out["value_mean"]) < 1e-6 and out["value_std"] < 1e-6
    assert 0 < out["policy_entropy"] <= np.log(3) + 1e-6 and 0 < out["policy_entropy_imagined"] <= np.log(3) + 1e-6
    assert 0 < out["top_action_share"] <= 1 and 0 < out["top_action_share_imagined"] <= 1
    # heads whose output is one bin whatever the input: the probe reports exactly that bin's value
    from twister_jax.distributions import symexp, twohot_bins

    def one_bin(head, k):
        head = jax.tree.map(lambda x: x, head)
        lin = head["linear_proj"]["linear"]
        lin["kernel"] = lin["kernel"].replace(jnp.zeros_like(lin["kernel"][...]))
        lin["bias"] = lin["bias"].replace(jnp.full(lin["bias"][...].shape, -50.0).at[k].set(0.0))
        return head

    bins = np.asarray(twohot_bins(int(config.model.bins), float(config.model.bins_range)))
    wm = dict(params["world_model"], reward_head=one_bin(params["world_model"]["reward_head"], 140))
    moved = dict(params, world_model=wm, critic=one_bin(params["critic"], 150))
    out = run(moved, batch, jax.random.key(1))
    np.testing.assert_allclose(out["reward_pred_mean"], float(symexp(bins[140])), rtol=1e-5)
    np.testing.assert_allclose(out["value_mean"], float(symexp(bins[150])), rtol=1e-5)
    assert out["value_std"] < 1e-5 and out["reward_corr"] is None
    assert out["policy_entropy"] == run(params, batch, jax.random.key(1))["policy_entropy"]  # the same actor
