"""DeepMind Control env with 64x64 pixels (docs/original.md §1.2; docs/interfaces.md §3).

* `suite.load(domain, task, task_kwargs={'random': seed})` with the env's step limit set to infinity:
  dm_control never ends the episode itself; the frame limit below does (docs/original.md §1.2).
* step(a): `a` clipped to [-1, 1] (float32, shape (A,)), applied for `action_repeat` (2) control
  steps through `Environment.step`; reward = sum of the rewards; the image is rendered after the
  last one with `physics.render(H, W, camera_id)` (camera 0, quadruped 2), as `pixels.Wrapper` does.
* Frames count `action_repeat` per step; at `time_limit_frames` (1,000 control steps = 500 agent
  steps) `is_last=True`; `is_terminal` is always False (docs/quirks.md §10.14).
* `fast_render` (ours, default off = the original's pixels): shadows and reflections off and no
  multisampling, about 1.5-2x faster rendering on CPU (software EGL); the pixels differ.

Rendering: `MUJOCO_GL=egl` is set when unset, before mujoco is imported (headless). If the GL backend
cannot start, `RenderingError` names the missing system library and `scripts/install_system_deps.sh`.

`get_state()` keys: `task` (str, checked), `physics` (float64, `mj_getState(mjSTATE_INTEGRATION)`:
time, qpos, qvel, act, warm start, controls, applied forces, mocap, plugin state), `model` (dict of
the model arrays the suite's tasks randomise per episode: target geom/site positions and sizes,
site colours, dof damping), `task_rng` (the task's `RandomState.get_state()`), `frames` (int),
`needs_reset` (bool). `set_state` restores them and reruns `mj_step1`, which recomputes the derived
positions/velocities exactly as the last `Physics.step` left them, so stepping on is bit-exact.
"""
from __future__ import annotations

import ctypes.util
import os
from typing import Optional

import numpy as np

from twister_jax.envs.base import Env, TimeStep, first_step
from twister_jax.suites import DMC_TASKS

INSTALL_HINT = "run `sudo bash scripts/install_system_deps.sh` (apt-get install of the headless EGL/OSMesa libraries)"
# model arrays that the 20 tasks' `initialize_episode` may change (reacher, finger)
MODEL_FIELDS = ("geom_pos", "geom_size", "site_pos", "site_size", "site_rgba", "dof_damping")


class RenderingError(RuntimeError):
    """MuJoCo cannot render headless; the message names the missing library and the install script."""


def _missing_gl_libraries(backend: str) -> list[str]:
    need = {"egl": ["EGL", "OpenGL", "gbm"], "osmesa": ["OSMesa"], "glfw": ["glfw", "GL"]}.get(backend, ["EGL"])
    return [f"lib{name}" for name in need if ctypes.util.find_library(name) is None]


def _rendering_error(exc: BaseException) -> RenderingError:
    backend = os.environ.get("MUJOCO_GL", "egl")
    missing = _missing_gl_libraries(backend)
    what = (f"missing system librar{'y' if len(missing) == 1 else 'ies'}: {', '.join(missing)}" if missing
            else "the GL libraries are present but no display/device could be opened")
    return RenderingError(f"MuJoCo rendering with MUJOCO_GL={backend} failed ({type(exc).__name__}: {exc}); "
                          f"{what}. To fix: {INSTALL_HINT}; or set MUJOCO_GL=osmesa (software, slower).")


def _import_suite():
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        from dm_control import suite
    except (ImportError, OSError, RuntimeError, AttributeError) as exc:
        if "GL" in str(exc) or "EGL" in str(exc) or "gl" in type(exc).__name__.lower():
            raise _rendering_error(exc) from exc
        raise
    return suite


class DMCEnv(Env):
    """One DMC visual task (see the module docstring).

    Args:
      task: one of the 20 task ids of docs/original.md §1.2 (`walker_walk`, `ball_in_cup_catch`, ...).
      seed: seeds the task's RandomState (initial states, targets); `reset(seed=s)` re-seeds it.
      action_repeat: control steps per agent step (2).
      time_limit_frames: truncation in control steps (1,000).
      camera: camera id; None = the original's (0, quadruped 2).
      image_size: (H, W) rendered directly, no resizing.
      fast_render: shadows/reflections/multisampling off (ours; default off).
    """

    discrete = False

    def __init__(self, task: str, *, seed: int = 0, action_repeat: int = 2, time_limit_frames: int = 1_000,
                 camera: Optional[int] = None, image_size=(64, 64), fast_render: bool = False):
        if task not in DMC_TASKS:
            raise ValueError(f"unknown DMC task {task!r}; allowed tasks: {', '.join(DMC_TASKS)}")
        suite = _import_suite()
        import mujoco

        self._mujoco = mujoco
        domain, name, num_actions, default_camera = DMC_TASKS[task]
        self.task = task
        self.action_repeat = int(action_repeat)
        self.time_limit_frames = int(time_limit_frames)
        self.camera = default_camera if camera is None else int(camera)
        self.image_shape = (int(image_size[0]), int(image_size[1]), 3)
        self.fast_render = bool(fast_render)
        self._env = suite.load(domain, name, task_kwargs={"random": int(seed)})
        self._env._step_limit = float("inf")  # noqa: SLF001 - our frame limit ends episodes (docs/original.md §1.2)
        self.physics = self._env.physics
        spec = self._env.action_spec()
        self.num_actions = int(np.prod(spec.shape))
        self._action_dtype = spec.dtype
        self._render_kwargs = {}
        if self.fast_render:
            self.physics.model.vis.quality.offsamples = 0  # read when the GL context is created
            self._render_kwargs = {"render_flag_overrides": {"shadow": False, "reflection": False,
                                                             "skybox": True}}
        self._sig = mujoco.mjtState.mjSTATE_INTEGRATION
        self._frames = 0
        self._needs_reset = True

    def _render(self) -> np.ndarray:
        h, w = self.image_shape[:2]
        try:
            image = self.physics.render(height=h, width=w, camera_id=self.camera, **self._render_kwargs)
        except Exception as exc:  # noqa: BLE001 - turned into a message naming the missing library
            if isinstance(exc, (ValueError, IndexError)):
                raise
            raise _rendering_error(exc) from exc
        return np.ascontiguousarray(image, dtype=np.uint8)

    def reset(self, seed: Optional[int] = None) -> TimeStep:
        if seed is not None:
            self._env.task.random.seed(int(seed))
        self._env.reset()
        self._frames = 0
        self._needs_reset = False
        return first_step(self._render())

    def step(self, action) -> TimeStep:
        if self._needs_reset:
            raise RuntimeError("DMCEnv.step after is_last (or before the first reset): call reset()")
        action = np.clip(np.asarray(action, np.float64).reshape(self.num_actions), -1.0, 1.0)
        reward = 0.0
        for _ in range(self.action_repeat):
            ts = self._env.step(action.astype(self._action_dtype))
            reward += float(ts.reward or 0.0)
        self._frames += self.action_repeat
        truncated = self._frames >= self.time_limit_frames
        self._needs_reset = truncated
        return TimeStep(self._render(), np.float32(reward), False, bool(truncated), False)

    def get_state(self) -> dict:
        m = self.physics.model
        return {
            "task": self.task,
            "physics": self.physics.get_state(sig=self._sig),
            "model": {k: np.array(getattr(m, k)) for k in MODEL_FIELDS},
            "task_rng": self._env.task.random.get_state(),
            "frames": int(self._frames),
            "needs_reset": bool(self._needs_reset),
        }

    def set_state(self, state: dict) -> None:
        if state["task"] != self.task:
            raise ValueError(f"DMC state of task {state['task']!r} given to a {self.task!r} env")
        m = self.physics.model
        for k, v in state["model"].items():
            getattr(m, k)[...] = v
        self.physics.set_state(np.asarray(state["physics"], np.float64), sig=self._sig)
        self._mujoco.mj_step1(m.ptr, self.physics.data.ptr)
        self._env.task.random.set_state(state["task_rng"])
        self._env._reset_next_step = False  # noqa: SLF001 - the episode goes on; no reset on the next step
        self._frames = int(state["frames"])
        self._needs_reset = bool(state["needs_reset"])

    def close(self) -> None:
        try:
            self.physics.free()
        except Exception:  # noqa: BLE001
            pass
