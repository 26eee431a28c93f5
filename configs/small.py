"""Small configs for the CPU learning check: the original's algorithm and defaults, only sizes reduced.

`get_config(task)` takes an Atari 100k game (`boxing`, `krull`, ...) or a DMC task (`cartpole_balance`,
...) and starts from that suite's full config (`configs/atari.py` / `configs/dmc.py`): the environment
protocol, the schedule (one env step per gradient step on Atari, 4 envs every 2nd step on DMC), the
losses, optimisers, quirk switches and the evaluation protocol stay as they are. Reduced, so that a
gradient step costs about 0.1-0.2 s on a 2-core CPU instead of about 20 s:

| key | full | small |
|---|---|---|
| batch_size x seq_len | 16 x 64 | 4 x 16 |
| model.hidden / contrastive_hidden | 512 | 32 |
| model.mlp_hidden (reward, continue, actor and critic heads) | 512 | 256 |
| model.dim_cnn (encoder/decoder channels 4-8-16-32) | 32 | 4 |
| model.stoch x discrete | 32 x 32 | 8 x 8 |
| model.blocks / heads | 4 / 8 | 2 / 2 |
| model.mlp_layers | 2 | 1 |
| model.contrastive_steps (K) | 10 | 3 |
| prefill_windows | 100 | 16 |
| eval_episodes / eval_envs | 100 (DMC 10) / 10 | 10 / 10 |

The imagination horizon stays 15. The heads are kept wider than the rest (256): a head's output logits move
by about (learning rate) x (fan-in) per Adam step, so at width 32 the reward (zero-initialised output)
and the policy are learned about 8x slower than at 256 (docs/learning_check.md), for little compute saved.
A limit to know before reading returns of this config: at these sizes the world model stays in its first
phase, drawing the mean frame from one posterior code for every frame, so its agent acts without seeing
the screen. With 8 x 8 latents the posterior saturates on that code and does not get out; the original's
32 x 32 latents with channels 16-32-64-128 (`--config.model.stoch=32 --config.model.discrete=32
--config.model.dim_cnn=16`, about 2-3x the cost per step) get out after about 2,000-3,500 world-model
steps. `experiments/world_model_probe.py` tells, for a run, whether that phase is over
(docs/learning_check.md, "What the world model sees" and "The latent size decides").
`num_train_steps` and `eval_every` are set by the caller (`experiments/learning_check.py` sets them from
an env-step budget).

Usage:
  python -m twister_jax.train --config=configs/small.py:boxing --workdir=runs/small_boxing --config.num_train_steps=5000
"""
from twister_jax.config_files import load_sibling


def get_config(task: str = "boxing"):
    from twister_jax.suites import ATARI_GAMES, DMC_TASKS, normalize_dmc_task, normalize_game

    if _accepts(normalize_dmc_task, task):
        c = load_sibling(__file__, "dmc.py").get_config(task)
    elif _accepts(normalize_game, task):
        c = load_sibling(__file__, "atari.py").get_config(task)
    else:
        raise ValueError(f"unknown small config task {task!r}; allowed: an Atari 100k game "
                         f"({', '.join(sorted(ATARI_GAMES))}) or a DMC task ({', '.join(sorted(DMC_TASKS))})")
    with c.unlocked():
        c.batch_size, c.seq_len = 4, 16
        c.prefill_windows = 16
        c.eval_episodes, c.eval_envs = 10, 10
        c.num_train_steps = 5_000
        c.eval_every = 1_000
        c.log_every = 100
        c.checkpoint_every = c.figure_every = 1_000
        m = c.model
        m.hidden, m.dim_cnn, m.stoch, m.discrete = 32, 4, 8, 8
        m.blocks, m.heads, m.mlp_hidden, m.mlp_layers = 2, 2, 256, 1
        m.contrastive_steps, m.contrastive_hidden = 3, 32
    common = load_sibling(__file__, "common.py")
    return common.validate(c)


def _accepts(normalize, name: str) -> bool:
    """Whether `normalize` (a suite's name normaliser) knows `name`."""
    try:
        normalize(name)
    except ValueError:
        return False
    return True
