"""Atari 100k env on ale-py directly (docs/original.md §1.1; docs/interfaces.md §3).

Reproduces gym's `AtariPreprocessing(frame_skip=4, noop_max=30, screen_size=64, grayscale_obs=False,
terminal_on_life_loss=False)` over a raw ALE env (frameskip 1, no sticky actions, minimal action set),
plus the TWISTER wrapper and `TimeLimit(108_000 frames)`:

* reset: `reset_game`, then `n ~ U{1, noop_max}` NOOPs (action 0 of the minimal set, always NOOP);
  if the game ends during the no-ops, `reset_game` again and continue the count. Then buffer 0 := the
  RGB screen, buffer 1 := zeros.
* step(a): repeat a for up to `action_repeat` frames, summing raw rewards (no clipping). The screen
  after frame `repeat-1` goes to buffer 1, the one after frame `repeat` to buffer 0; if the game ends
  during the repeats the loop stops at once and the buffers are not refreshed.
* observation: `buffer0 := max(buffer0, buffer1)` **in place** (as gym does; so an interrupted step
  returns max(previous max, buffer 1)), then `cv2.resize(..., INTER_AREA)` to 64x64 RGB uint8.
* `is_terminal` = ALE game over (all lives lost; life loss is not exposed). Frames count
  `action_repeat` per step (also on a step the game ended early, as TimeLimit counts); when they
  reach `time_limit_frames`, `is_last=True` (truncation, `is_terminal` stays as it is).

Seeding (ours: the original seeds nothing, docs/quirks.md §10.18): ALE's `random_seed` and the no-op PCG64
generator both derive from `seed`; `reset(seed=s)` reloads the ROM with the new ALE seed (about
0.3 s) and re-seeds the no-op generator, so an episode depends on `s` alone.

`get_state()` keys: `ale` (bytes: `cloneState(include_rng=True).serialize()`, no pickle), `buffers` (uint8
(2, 210, 160, 3)), `noop_rng` (PCG64 state dict), `frames` (int, frames of this episode),
`game` (str, checked on restore), `needs_reset` (bool), `seed` (int, the ALE seed in use).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from twister_jax.envs.base import Env, TimeStep, first_step
from twister_jax.suites import ATARI_GAMES

# One 210x160 -> 64x64 INTER_AREA resize per agent step: OpenCV's thread pool costs more than it gains
# on so small an image (measured ~270 -> ~200 us on 2 cores); the pixels are the same.
cv2.setNumThreads(1)

# our snake_case ids -> ale-py ROM ids (`ale_py.roms.get_rom_path` names)
ROM_IDS: dict[str, str] = {g: g for g in ATARI_GAMES}


def rom_id(game: str) -> str:
    """Maps a game id of the 26 Atari 100k games (exact snake_case) to its ale-py ROM id.

    Raises:
      ValueError naming the game and listing the 26.
    """
    if game not in ROM_IDS:
        raise ValueError(f"unknown Atari 100k game {game!r}; allowed games: {', '.join(ATARI_GAMES)}")
    return ROM_IDS[game]


def _ale_seed(seed: int) -> int:
    # ALE takes a non-negative 31-bit int; derive it so that it differs from the no-op stream's seed
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0] & 0x7FFFFFFF)


class AtariEnv(Env):
    """One Atari game with the original protocol (see the module docstring).

    Args:
      game: snake_case id of one of the 26 Atari 100k games (`ms_pacman`, `up_n_down`, ...).
      seed: seeds ALE and the no-op generator.
      action_repeat: frames per agent step (4).
      time_limit_frames: truncation in frames (108_000).
      noop_max: no-ops at reset drawn uniformly in [1, noop_max]; 0 disables them.
      sticky: ALE `repeat_action_probability` (0.0 in the original; ours to vary).
      image_size: (H, W) of the observation.
    """

    discrete = True

    def __init__(self, game: str, *, seed: int = 0, action_repeat: int = 4, time_limit_frames: int = 108_000,
                 noop_max: int = 30, sticky: float = 0.0, image_size=(64, 64)):
        import ale_py
        import ale_py.roms  # a submodule: not loaded by `import ale_py` unless gymnasium is installed

        self.game = game
        self._rom = ale_py.roms.get_rom_path(rom_id(game))
        self.action_repeat = int(action_repeat)
        self.time_limit_frames = int(time_limit_frames)
        self.noop_max = int(noop_max)
        self.sticky = float(sticky)
        self.image_shape = (int(image_size[0]), int(image_size[1]), 3)
        self._ale = ale_py.ALEInterface()
        self._ale.setLoggerMode(ale_py.LoggerMode.Error)
        self._ale.setInt("frame_skip", 1)
        self._ale.setFloat("repeat_action_probability", self.sticky)
        self._load(_ale_seed(seed))
        self._noop_rng = np.random.Generator(np.random.PCG64(int(seed)))
        self._actions = list(self._ale.getMinimalActionSet())
        self.num_actions = len(self._actions)
        h, w = self._ale.getScreenDims()
        self._buffers = np.zeros((2, h, w, 3), np.uint8)
        self._frames = 0
        self._needs_reset = True

    def _load(self, ale_seed: int) -> None:
        self._seed = int(ale_seed)
        self._ale.setInt("random_seed", self._seed)
        self._ale.loadROM(self._rom)

    # ------------------------------------------------------------------------------- protocol
    def _obs(self) -> np.ndarray:
        np.maximum(self._buffers[0], self._buffers[1], out=self._buffers[0])
        h, w = self.image_shape[:2]
        return cv2.resize(self._buffers[0], (w, h), interpolation=cv2.INTER_AREA)

    def reset(self, seed: Optional[int] = None) -> TimeStep:
        if seed is not None:
            self._load(_ale_seed(seed))
            self._noop_rng = np.random.Generator(np.random.PCG64(int(seed)))
        ale = self._ale
        ale.reset_game()
        noops = int(self._noop_rng.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            ale.act(self._actions[0])
            if ale.game_over(with_truncation=False):
                ale.reset_game()
        ale.getScreenRGB(self._buffers[0])
        self._buffers[1].fill(0)
        self._frames = 0
        self._needs_reset = False
        return first_step(self._obs())

    def step(self, action) -> TimeStep:
        if self._needs_reset:
            raise RuntimeError("AtariEnv.step after is_last (or before the first reset): call reset()")
        index = int(action)
        if not 0 <= index < self.num_actions:
            raise ValueError(f"action {index} outside [0, {self.num_actions}) for {self.game}")
        ale, a = self._ale, self._actions[index]
        reward = 0.0
        over = False
        for t in range(self.action_repeat):
            reward += ale.act(a)
            over = ale.game_over(with_truncation=False)
            if over:
                break
            if t == self.action_repeat - 2:
                ale.getScreenRGB(self._buffers[1])
            elif t == self.action_repeat - 1:
                ale.getScreenRGB(self._buffers[0])
        self._frames += self.action_repeat
        truncated = self._frames >= self.time_limit_frames
        self._needs_reset = over or truncated
        return TimeStep(self._obs(), np.float32(reward), False, bool(over or truncated), bool(over))

    # ---------------------------------------------------------------------------------- state
    def get_state(self) -> dict:
        return {
            "game": self.game,
            "seed": self._seed,
            "ale": bytes(self._ale.cloneState(include_rng=True).serialize()),
            "buffers": self._buffers.copy(),
            "noop_rng": self._noop_rng.bit_generator.state,
            "frames": int(self._frames),
            "needs_reset": bool(self._needs_reset),
        }

    def set_state(self, state: dict) -> None:
        if state["game"] != self.game:
            raise ValueError(f"Atari state of game {state['game']!r} given to a {self.game!r} env")
        self._seed = int(state["seed"])  # only read by the next loadROM; the ALE RNG is in the state
        import ale_py
        self._ale.restoreState(ale_py.ALEState(bytes(state["ale"])))
        self._buffers[...] = state["buffers"]
        self._noop_rng.bit_generator.state = state["noop_rng"]
        self._frames = int(state["frames"])
        self._needs_reset = bool(state["needs_reset"])

    def close(self) -> None:
        self._ale = None
