"""The environment interface shared by Atari, DMC and the fake env (docs/interfaces.md §3; docs/original.md §1).

No jax import here or anywhere in `twister_jax.envs`.

Protocol of one env (every suite):

* `reset(seed=None) -> TimeStep` starts an episode: `is_first=True`, reward 0, `is_last=False`,
  `is_terminal=False`. With `seed` the env is re-seeded first (every random source of the env), so an
  episode is a function of that seed alone; without it the env's own random stream continues.
* `step(action) -> TimeStep`: Atari and the discrete fake env take an int index in `[0, num_actions)`,
  DMC and the continuous fake env a float32 vector of shape `(num_actions,)` (clipped to [-1, 1]).
  `is_last` = `is_terminal` (game over) or truncated (frame limit); a truncated step has
  `is_last=True, is_terminal=False`. Stepping after `is_last` without a reset is an error.
* `get_state() -> dict` / `set_state(dict)`: everything needed to continue the episode in flight bit
  for bit (plain picklable values: numpy arrays, bytes, ints, dicts). Each env documents its keys.
* `close()` releases emulator / renderer resources.

`GuardedEnv` wraps an env so that an exception inside `step` ends the episode cleanly (docs/interfaces.md §3,
docs/quirks.md §10.10 fixed): the failing step is returned as `TimeStep(image=<previous image>, reward=0,
is_last=True, is_terminal=False, error=True)`, a warning with the traceback is logged, and the caller
resets as after any `is_last`. A reset that raises rebuilds the env from its factory once.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Optional

import numpy as np

log = logging.getLogger(__name__)

SUITES = ("atari", "dmc", "fake")


@dataclasses.dataclass(frozen=True)
class TimeStep:
    """One observation of one env (docs/interfaces.md §3).

    Attributes:
      image: uint8 (H, W, 3), H = W = 64 by default, RGB.
      reward: float32 scalar, reward of the transition into `image` (0 on reset steps).
      is_first: the episode's reset observation.
      is_last: the episode ends here (terminal or truncated).
      is_terminal: game over (Atari only; never for DMC or the fake env).
      error: ours: this step ended the episode because the env raised (see `GuardedEnv`).
    """
    image: np.ndarray
    reward: np.float32
    is_first: bool
    is_last: bool
    is_terminal: bool
    error: bool = False


def first_step(image: np.ndarray) -> TimeStep:
    return TimeStep(image, np.float32(0.0), True, False, False)


class Env:
    """Base class: the small interface every env implements (see the module docstring).

    Attributes:
      num_actions: A, size of the minimal action set (discrete) or action dims (continuous).
      discrete: whether actions are indices (True) or float vectors (False).
      image_shape: (H, W, 3).
    """

    num_actions: int
    discrete: bool
    image_shape: tuple

    @property
    def action_shape(self) -> tuple:
        """() for discrete envs (an int index), (A,) for continuous ones."""
        return () if self.discrete else (self.num_actions,)

    def reset(self, seed: Optional[int] = None) -> TimeStep:
        raise NotImplementedError

    def step(self, action) -> TimeStep:
        raise NotImplementedError

    def get_state(self) -> dict:
        raise NotImplementedError

    def set_state(self, state: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class GuardedEnv(Env):
    """Turns an exception in `step` into a clean episode end (see the module docstring).

    `get_state` adds `last_image` (the image returned last, used for an error step) to the inner
    env's dict under key `"guard"`; `set_state` accepts dicts with or without it.
    """

    def __init__(self, factory: Callable[[], Env]):
        self._factory = factory
        self.env = factory()
        self.num_actions = self.env.num_actions
        self.discrete = self.env.discrete
        self.image_shape = self.env.image_shape
        self._last_image = np.zeros(self.image_shape, np.uint8)
        self.errors = 0

    def reset(self, seed: Optional[int] = None) -> TimeStep:
        try:
            ts = self.env.reset(seed=seed)
        except Exception:  # noqa: BLE001 - a broken emulator is rebuilt once
            log.warning("env reset raised; rebuilding the env", exc_info=True)
            try:
                self.env.close()
            except Exception:  # noqa: BLE001
                pass
            self.env = self._factory()
            ts = self.env.reset(seed=seed)
        self._last_image = ts.image
        return ts

    def step(self, action) -> TimeStep:
        try:
            ts = self.env.step(action)
        except Exception as exc:  # noqa: BLE001 - docs/interfaces.md §3: end the episode, never splice
            self.errors += 1
            log.warning("env step raised %s: %s; ending the episode (is_last, not terminal)",
                        type(exc).__name__, exc, exc_info=True)
            return TimeStep(self._last_image, np.float32(0.0), False, True, False, error=True)
        self._last_image = ts.image
        return ts

    def get_state(self) -> dict:
        state = dict(self.env.get_state())
        state["guard"] = {"last_image": np.array(self._last_image)}
        return state

    def set_state(self, state: dict) -> None:
        state = dict(state)
        guard = state.pop("guard", None)
        self.env.set_state(state)
        if guard is not None:
            self._last_image = np.array(guard["last_image"])

    def close(self) -> None:
        self.env.close()


def _cfg(config, key: str, default: Any = None) -> Any:
    """Reads `config.key` from a ConfigDict, dict or object; `default` when absent."""
    if isinstance(config, dict):
        return config.get(key, default)
    try:
        return config[key]
    except (KeyError, TypeError, AttributeError):
        return getattr(config, key, default)


def make_env(env_config, seed: int, *, guard: bool = True) -> Env:
    """Builds one env from the config's `env` section (docs/interfaces.md §2).

    Args:
      env_config: ConfigDict (or dict) with keys `suite` ('atari' | 'dmc' | 'fake'), `task`,
        `action_repeat`, `time_limit_frames`, `noop_max`, `sticky`, `camera`, `image_size`,
        `num_actions`, optionally `fast_render` (DMC).
      seed: int seed of every random source of the env.
      guard: wrap in `GuardedEnv` (exceptions in `step` end the episode cleanly).

    Raises:
      ValueError: unknown suite or task, or `num_actions` that differs from the env's (named).
    """
    suite = str(_cfg(env_config, "suite"))
    if suite not in SUITES:
        raise ValueError(f"env.suite={suite!r} is not one of {SUITES}")

    def factory() -> Env:
        return _build(suite, env_config, int(seed))

    env = GuardedEnv(factory) if guard else factory()
    expected = _cfg(env_config, "num_actions")
    if expected is not None and int(expected) != env.num_actions:
        env.close()
        raise ValueError(
            f"env.num_actions={int(expected)} but {suite} task {_cfg(env_config, 'task')!r} has "
            f"{env.num_actions} {'actions' if env.discrete else 'action dims'}")
    return env


def _build(suite: str, c, seed: int) -> Env:
    size = tuple(int(s) for s in _cfg(c, "image_size", (64, 64)))
    repeat = _cfg(c, "action_repeat")
    limit = _cfg(c, "time_limit_frames")
    if suite == "atari":
        from twister_jax.envs.atari import AtariEnv
        return AtariEnv(str(_cfg(c, "task")), seed=seed, action_repeat=int(repeat or 4),
                        time_limit_frames=int(limit or 108_000), noop_max=int(_cfg(c, "noop_max", 30)),
                        sticky=float(_cfg(c, "sticky", 0.0) or 0.0), image_size=size)
    if suite == "dmc":
        from twister_jax.envs.dmc import DMCEnv
        camera = _cfg(c, "camera")
        return DMCEnv(str(_cfg(c, "task")), seed=seed, action_repeat=int(repeat or 2),
                      time_limit_frames=int(limit or 1_000), camera=None if camera is None else int(camera),
                      image_size=size, fast_render=bool(_cfg(c, "fast_render", False)))
    from twister_jax.envs.fake import FakeEnv
    num_actions = _cfg(c, "num_actions")
    return FakeEnv(str(_cfg(c, "task")), seed=seed, num_actions=None if num_actions is None else int(num_actions),
                   action_repeat=int(repeat or 1), time_limit_frames=int(limit or 50), image_size=size)
