"""Tiny configs: the same code paths with tiny widths and few steps, for tests, CI and notebooks.

Usage:
  python -m twister_jax.train --config=configs/tiny.py:atari --workdir=runs/tiny       # real Atari (Pong)
  python -m twister_jax.train --config=configs/tiny.py:dmc --workdir=runs/tiny_dmc     # real DMC
  python -m twister_jax.train --config=configs/tiny.py:fake --workdir=runs/tiny_fake   # fake env, discrete
  python -m twister_jax.train --config=configs/tiny.py:fake_continuous --workdir=runs/tiny_fc
  python -m twister_jax.train --config=configs/tiny.py:fake_bandit --workdir=runs/tiny_bandit   # learns in ~500 steps

Sizes are not the paper's: they keep a CPU train step in the tens of milliseconds.
"""
from twister_jax.config_files import load_sibling

VARIANTS = ("atari", "dmc", "fake", "fake_continuous", "fake_bandit")


def get_config(variant: str = "fake"):
    from twister_jax.suites import ATARI_GAMES, DMC_TASKS

    common = load_sibling(__file__, "common.py")
    if variant not in VARIANTS:
        raise ValueError(f"unknown tiny config variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    c = common.get_base_config()
    c.batch_size = 4
    c.seq_len = 16
    c.imagination_horizon = 5
    c.num_train_steps = 300
    c.prefill_windows = 8
    c.replay_capacity = 100_000
    c.log_every = 25
    c.figure_every = 100
    c.checkpoint_every = 100
    c.eval_every = 150
    c.eval_episodes = 4
    c.eval_envs = 2

    m = c.model
    m.hidden, m.dim_cnn, m.stoch, m.discrete = 32, 4, 4, 8
    m.blocks, m.heads, m.mlp_hidden, m.mlp_layers = 2, 2, 32, 1
    m.contrastive_steps, m.contrastive_hidden = 3, 32
    m.bins = 255

    if variant == "atari":
        c.env.suite, c.env.task = "atari", "pong"
        c.env.num_actions = ATARI_GAMES["pong"]
        c.env.time_limit_frames = 4 * 200   # short episodes keep evaluation quick
    elif variant == "dmc":
        c.env.suite, c.env.task = "dmc", "cartpole_balance"
        _, _, c.env.num_actions, c.env.camera = DMC_TASKS["cartpole_balance"]
        c.env.action_repeat, c.env.num_envs, c.env.time_limit_frames, c.env.noop_max = 2, 4, 100, 0
        c.env_step_every = 2
    elif variant == "fake_bandit":
        # the learning test's task (tests/test_fake_learning.py): 8 actions, one of them always pays;
        # heads of width 256 so that the zero-initialised reward head learns the reward in ~200 steps
        # (at width 32 it takes thousands: docs/learning_check.md); 32 x 32 images keep steps cheap
        c.env.suite, c.env.task, c.env.num_actions = "fake", "bandit", 8
        c.env.action_repeat, c.env.noop_max, c.env.time_limit_frames = 1, 0, 50
        c.env.image_size = (32, 32)
        m.mlp_hidden = 256
        c.num_train_steps, c.eval_every, c.eval_episodes = 600, 300, 8
    else:
        c.env.suite = "fake"
        c.env.task = "discrete" if variant == "fake" else "continuous"
        c.env.num_actions = 3 if variant == "fake" else 2
        c.env.action_repeat, c.env.noop_max = 1, 0
        c.env.time_limit_frames = 50
        if variant == "fake_continuous":
            c.env.num_envs, c.env_step_every = 4, 2
    return common.validate(c)
