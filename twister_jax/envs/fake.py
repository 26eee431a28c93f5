"""A tiny deterministic image env whose reward depends on what the image shows (docs/interfaces.md §8).

Every observation shows a fresh random *target*, drawn from the env's PCG64 generator; the reward of
the next step pays for the action that matches the target shown. So a policy must read the image
(encoder + world model), a bias alone earns the random policy's return.

* `discrete` (Atari code paths): target k in [0, A). The image is split into A vertical stripes on a
  dark background; stripe k is filled with a bright colour of its own (both position and colour tell
  k). step(a) -> reward 1.0 if a == k else 0.0. Random policy: 1/A per step on average.
* `bandit` (discrete): the target is always the last action, k = A - 1, and every image is the
  same: one action pays 1.0 each step, the others 0. Random policy: 1/A per step; a policy that
  learned: 1 per step. Whether the agent learns to act on what its world model predicts is then
  the only question (no image reading), which a short run answers (tests/test_fake_learning.py).
* `continuous` (DMC code paths): target signs s in {-1, +1}^A. The image is split into A horizontal
  bands; band i shows a bright green patch in its right half when s_i = +1, a bright red patch in
  its left half when s_i = -1. step(a) -> reward mean_i(clip(a_i, -1, 1) * s_i) in [-1, 1].
  Random policy: expected 0 per step.
* Episodes: frames count `action_repeat` per step; `is_last` (truncation, never terminal) when they
  reach `time_limit_frames` (50 agent steps at the tiny config).

`get_state()` keys: `task`, `rng` (PCG64 state), `target` (int64 (1,) or float32 (A,)), `frames`,
`needs_reset`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from twister_jax.envs.base import Env, TimeStep, first_step

TASKS = ("discrete", "continuous", "bandit")
_PALETTE = np.array([[255, 60, 60], [60, 255, 60], [60, 120, 255], [255, 255, 60], [255, 60, 255],
                     [60, 255, 255], [255, 160, 40], [255, 255, 255]], np.uint8)
_BACKGROUND = 30


class FakeEnv(Env):
    """See the module docstring.

    Args:
      task: 'discrete' or 'continuous'.
      seed: seeds the target generator; `reset(seed=s)` re-seeds it.
      num_actions: A (default 3 discrete, 2 continuous).
      action_repeat: frames per step (only counts towards the time limit).
      time_limit_frames: truncation in frames.
      image_size: (H, W).
    """

    def __init__(self, task: str = "discrete", *, seed: int = 0, num_actions: Optional[int] = None,
                 action_repeat: int = 1, time_limit_frames: int = 50, image_size=(64, 64)):
        if task not in TASKS:
            raise ValueError(f"unknown fake task {task!r}; allowed tasks: {', '.join(TASKS)}")
        self.task = task
        self.discrete = task in ("discrete", "bandit")
        self.num_actions = int(num_actions if num_actions is not None else (3 if self.discrete else 2))
        if self.num_actions < 1 or (self.discrete and self.num_actions > 8):
            raise ValueError(f"fake {task} env supports 1..8 actions, got {self.num_actions}")
        self.action_repeat = int(action_repeat)
        self.time_limit_frames = int(time_limit_frames)
        self.image_shape = (int(image_size[0]), int(image_size[1]), 3)
        self._rng = np.random.Generator(np.random.PCG64(int(seed)))
        self._target = np.zeros(1 if self.discrete else self.num_actions, np.int64 if self.discrete else np.float32)
        self._frames = 0
        self._needs_reset = True

    def _draw(self) -> None:
        if self.task == "bandit":
            self._target = np.array([self.num_actions - 1], np.int64)
        elif self.discrete:
            self._target = np.array([self._rng.integers(0, self.num_actions)], np.int64)
        else:
            self._target = np.where(self._rng.random(self.num_actions) < 0.5, -1.0, 1.0).astype(np.float32)

    def render(self) -> np.ndarray:
        """The image of the current target, uint8 (H, W, 3)."""
        h, w = self.image_shape[:2]
        img = np.full((h, w, 3), _BACKGROUND, np.uint8)
        a = self.num_actions
        if self.discrete:
            k = int(self._target[0])
            x0, x1 = k * w // a, (k + 1) * w // a
            img[:, x0:x1] = _PALETTE[k]
        else:
            for i, s in enumerate(self._target):
                y0, y1 = i * h // a, (i + 1) * h // a
                if s > 0:
                    img[y0:y1, w // 2:] = (60, 255, 60)
                else:
                    img[y0:y1, :w // 2] = (255, 60, 60)
        return img

    def reset(self, seed: Optional[int] = None) -> TimeStep:
        if seed is not None:
            self._rng = np.random.Generator(np.random.PCG64(int(seed)))
        self._draw()
        self._frames = 0
        self._needs_reset = False
        return first_step(self.render())

    def step(self, action) -> TimeStep:
        if self._needs_reset:
            raise RuntimeError("FakeEnv.step after is_last (or before the first reset): call reset()")
        if self.discrete:
            index = int(action)
            if not 0 <= index < self.num_actions:
                raise ValueError(f"action {index} outside [0, {self.num_actions})")
            reward = 1.0 if index == int(self._target[0]) else 0.0
        else:
            a = np.clip(np.asarray(action, np.float32).reshape(self.num_actions), -1.0, 1.0)
            reward = float(np.mean(a * self._target))
        self._draw()
        self._frames += self.action_repeat
        truncated = self._frames >= self.time_limit_frames
        self._needs_reset = truncated
        return TimeStep(self.render(), np.float32(reward), False, bool(truncated), False)

    def get_state(self) -> dict:
        return {"task": self.task, "rng": self._rng.bit_generator.state, "target": self._target.copy(),
                "frames": int(self._frames), "needs_reset": bool(self._needs_reset)}

    def set_state(self, state: dict) -> None:
        if state["task"] != self.task:
            raise ValueError(f"fake state of task {state['task']!r} given to a {self.task!r} env")
        self._rng.bit_generator.state = state["rng"]
        self._target = np.array(state["target"], self._target.dtype)
        self._frames = int(state["frames"])
        self._needs_reset = bool(state["needs_reset"])
