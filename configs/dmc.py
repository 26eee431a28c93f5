"""DeepMind Control (visual) configs: `get_config(domain_task)` for the 20 tasks (docs/original.md §1.2, §2.5, §8.1).

Usage:
  python -m twister_jax.train --config=configs/dmc.py:walker_walk --workdir=runs/walker_walk
  python -m twister_jax.train --config=configs/dmc.py:ball_in_cup_catch --workdir=runs/cup --config.compute_dtype=bfloat16

Task names are case-insensitive and accept `-` for `_` (`Walker-walk`, `cup_catch` for ball_in_cup_catch).
The original computes DMC forward passes in float16 with loss scaling; we default to float32 and
offer bfloat16 (`--config.compute_dtype=bfloat16`) instead (see README, differences).
"""
from twister_jax.config_files import load_sibling



def get_config(domain_task: str = "walker_walk"):
    from twister_jax.suites import DMC_TASKS, normalize_dmc_task

    common = load_sibling(__file__, "common.py")
    task = normalize_dmc_task(domain_task)
    _, _, num_actions, camera = DMC_TASKS[task]
    c = common.get_base_config()
    c.env.suite = "dmc"
    c.env.task = task
    c.env.num_actions = num_actions         # docs/original.md §1.2 (action dims)
    c.env.camera = camera                   # docs/original.md §1.2: camera 0, quadruped 2
    c.env.action_repeat = 2                 # docs/original.md §1.2
    c.env.num_envs = 4                      # docs/original.md §1.2
    c.env.time_limit_frames = 1_000         # docs/original.md §1.2: 1,000 control steps = 500 agent steps
    c.env.noop_max = 0                      # no no-ops in DMC
    c.num_train_steps = 250_000             # docs/original.md §2.5: 50 x 5,000
    c.env_step_every = 2                    # docs/original.md §2.5: 4 envs stepped every 2nd gradient step
    c.checkpoint_every = 5_000              # docs/original.md §7.4: every epoch
    c.figure_every = 5_000                  # docs/original.md §7.4
    c.eval_every = 25_000                   # docs/original.md §1.3: every 5 epochs
    c.eval_episodes = 10                    # docs/original.md §1.3
    c.eval_envs = 10
    c.compute_dtype = "float32"             # docs/interfaces.md §2: both suites default to float32
    return common.validate(c)
