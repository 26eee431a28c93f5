"""The benchmark suites: Atari 100k games and DMC visual tasks, with name normalisation.

No heavy imports: configs, environments and reports all read these tables.
docs/original.md §1.1 (Atari minimal action-set sizes, ale-py 0.12.1) and 1.2 (DMC tasks, action dims,
camera ids).
"""
from __future__ import annotations

# docs/original.md §1.1: game id -> size of the minimal action set.
ATARI_GAMES: dict[str, int] = {
    "alien": 18, "amidar": 10, "assault": 7, "asterix": 9, "bank_heist": 18, "battle_zone": 18,
    "boxing": 18, "breakout": 4, "chopper_command": 18, "crazy_climber": 9, "demon_attack": 6,
    "freeway": 3, "frostbite": 18, "gopher": 8, "hero": 18, "jamesbond": 18, "kangaroo": 18,
    "krull": 18, "kung_fu_master": 14, "ms_pacman": 9, "pong": 6, "private_eye": 18, "qbert": 6,
    "road_runner": 18, "seaquest": 18, "up_n_down": 6,
}

# docs/original.md §1.2: task id -> (dm_control domain, task, action dims, camera id).
DMC_TASKS: dict[str, tuple[str, str, int, int]] = {
    "acrobot_swingup": ("acrobot", "swingup", 1, 0),
    "ball_in_cup_catch": ("ball_in_cup", "catch", 2, 0),
    "cartpole_balance": ("cartpole", "balance", 1, 0),
    "cartpole_balance_sparse": ("cartpole", "balance_sparse", 1, 0),
    "cartpole_swingup": ("cartpole", "swingup", 1, 0),
    "cartpole_swingup_sparse": ("cartpole", "swingup_sparse", 1, 0),
    "cheetah_run": ("cheetah", "run", 6, 0),
    "finger_spin": ("finger", "spin", 2, 0),
    "finger_turn_easy": ("finger", "turn_easy", 2, 0),
    "finger_turn_hard": ("finger", "turn_hard", 2, 0),
    "hopper_hop": ("hopper", "hop", 4, 0),
    "hopper_stand": ("hopper", "stand", 4, 0),
    "pendulum_swingup": ("pendulum", "swingup", 1, 0),
    "quadruped_walk": ("quadruped", "walk", 12, 2),
    "quadruped_run": ("quadruped", "run", 12, 2),
    "reacher_easy": ("reacher", "easy", 2, 0),
    "reacher_hard": ("reacher", "hard", 2, 0),
    "walker_run": ("walker", "run", 6, 0),
    "walker_stand": ("walker", "stand", 6, 0),
    "walker_walk": ("walker", "walk", 6, 0),
}


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def normalize_game(name: str) -> str:
    """Maps `alien`, `Alien`, `MsPacman`, `ms_pacman`, `mspacman`, `ms-pacman` to the snake_case id.

    Raises:
      ValueError naming the bad value and listing the 26 games.
    """
    lookup = {_squash(g): g for g in ATARI_GAMES}
    key = _squash(str(name))
    if key not in lookup:
        raise ValueError(f"unknown Atari 100k game {name!r}; allowed games: {', '.join(ATARI_GAMES)}")
    return lookup[key]


def normalize_dmc_task(name: str) -> str:
    """Maps `walker_walk`, `Walker-walk`, `ball_in_cup_catch`, `cup_catch` to the task id.

    Raises:
      ValueError naming the bad value and listing the 20 tasks.
    """
    lookup = {_squash(t): t for t in DMC_TASKS}
    lookup[_squash("cup_catch")] = "ball_in_cup_catch"
    key = _squash(str(name))
    if key not in lookup:
        raise ValueError(f"unknown DMC task {name!r}; allowed tasks: {', '.join(DMC_TASKS)}")
    return lookup[key]


def seed_packs(seeds: list[int], per_process: int) -> list[list[int]]:
    """Sorted seeds -> packs of at most `per_process` consecutive seeds, one training process each
    (a process with `config.num_seeds = n` trains `seed, ..., seed + n - 1`)."""
    out: list[list[int]] = []
    for s in seeds:
        if out and s == out[-1][-1] + 1 and len(out[-1]) < per_process:
            out[-1].append(s)
        else:
            out.append([s])
    return out


def pack_workdir(pack: list[int]) -> tuple[str, list[str]]:
    """A seed pack's workdir name under its task folder and its extra train flags:
    `seed_<s>` and no flag for one seed, `seeds_<a>-<b>` and `--config.num_seeds=<n>` for a group."""
    if len(pack) == 1:
        return f"seed_{pack[0]}", []
    return f"seeds_{pack[0]}-{pack[-1]}", [f"--config.num_seeds={len(pack)}"]
