"""Atari 100k configs: `get_config(game)` for the 26 games (docs/original.md §1.1, §2.5, §8.1).

Usage:
  python -m twister_jax.train --config=configs/atari.py:alien --workdir=runs/alien
  python -m twister_jax.train --config=configs/atari.py:ms_pacman --workdir=runs/ms_pacman --config.seed=1
  python -m twister_jax.train --config=configs/atari.py:pong --workdir=runs/pong --config.compute_dtype=bfloat16

Game names are case- and underscore-insensitive (`alien`, `Alien`, `ms_pacman`, `MsPacman`, `mspacman`).
"""
from twister_jax.config_files import load_sibling



def get_config(game: str = "alien"):
    from twister_jax.suites import ATARI_GAMES, normalize_game

    common = load_sibling(__file__, "common.py")
    game = normalize_game(game)
    c = common.get_base_config()
    c.env.suite = "atari"
    c.env.task = game
    c.env.num_actions = ATARI_GAMES[game]   # docs/original.md §1.1 minimal action set
    c.env.action_repeat = 4                 # docs/original.md §1.1 (frame skip 4, max-pool of the last two)
    c.env.num_envs = 1                      # docs/original.md §1.1 item 6
    c.env.time_limit_frames = 108_000       # docs/original.md §1.1 item 4
    c.env.noop_max = 30                     # docs/original.md §1.1
    c.env.sticky = 0.0                      # docs/original.md §1.1
    c.num_train_steps = 100_000             # docs/original.md §2.5: 50 x 2,000
    c.env_step_every = 1                    # docs/original.md §2.5: 1 env step after every gradient step
    c.checkpoint_every = 2_000              # docs/original.md §7.4: every epoch
    c.figure_every = 2_000                  # docs/original.md §7.4
    c.eval_every = 10_000                   # docs/original.md §1.3: every 5 epochs
    c.eval_episodes = 100                   # docs/original.md §1.3
    c.eval_envs = 10
    c.compute_dtype = "float32"             # docs/original.md §6.2
    return common.validate(c)
