"""The training envs' side of a run: acting, pre-fill, episode statistics (docs/original.md §7.3).

`Collector` owns everything acting depends on: the training envs (a `VectorEnv`), the observations in
flight, the acting state (latent, previous action, KV cache; a device pytree), the episode returns
and lengths so far, the finished-episode statistics not yet logged, the host NumPy RNG of the
pre-fill actions, and the counters (env steps, batched steps, episodes). `get_state()` returns the
host part as plain values (see `twister_jax.state_codec`); the acting state is the attribute
`act_state`, saved beside the train state as a device pytree.

One batched env step (`step`), for all N envs at once:
  1. the policy runs on the current observations with key `fold_in(fold_in(base, ACT), calls)`,
     always (it fills the KV cache, also during pre-fill);
  2. during pre-fill the executed actions are uniform random from the host RNG instead; the acting
     state keeps the policy's sample (`quirks.prefill_policy_action`, the original) or the executed
     action (docs/quirks.md §10.8);
  3. each env's new record goes to its replay stream; an env whose episode ended is reset at once
     and its reset record (zero action, reward 0) appended, so the vector env never auto-resets.

`step` is three halves that a group of runs (docs/architecture.md §9) calls separately, so that one
vmapped policy call serves every run and one `VectorEnv` steps every run's envs in parallel:
`observe()` (images, flags and this step's key), `choose(policy_action, prefill=)` (the executed
actions), `record(timesteps, stored)` (replay, statistics, resets). A group gives each run's
collector an `EnvSlice` of the shared `VectorEnv` (`envs=`).
"""
from __future__ import annotations

import numpy as np

from twister_jax.acting import ACT, KeyStream, env_actions, env_seed, random_actions, stack_obs
from twister_jax.envs.vector import VectorEnv


def env_seeds(config, process_index: int = 0) -> list[int]:
    """Seeds of a run's `config.env.num_envs` training envs (from `config.seed`)."""
    return [env_seed(int(config.seed), 102, int(process_index), i) for i in range(int(config.env.num_envs))]


class EnvSlice:
    """Envs `start .. start + n - 1` of a shared `VectorEnv`, with a `VectorEnv`'s interface for one
    run's `Collector` (the group steps the shared env itself; `close` is the owner's)."""

    def __init__(self, envs: VectorEnv, start: int, n: int):
        self.shared, self.start, self.n = envs, int(start), int(n)
        self.num_actions = envs.num_actions

    def reset(self) -> list:
        return [self.shared.reset_one(self.start + i) for i in range(self.n)]

    def reset_one(self, i: int):
        return self.shared.reset_one(self.start + int(i))

    def step(self, actions) -> list:
        full = [None] * self.shared.n
        full[self.start:self.start + self.n] = list(actions)
        mask = np.zeros(self.shared.n, bool)
        mask[self.start:self.start + self.n] = True
        return self.shared.step(full, mask=mask)[self.start:self.start + self.n]

    def get_state(self) -> list:
        return self.shared.get_state()[self.start:self.start + self.n]

    def set_state(self, states) -> None:
        full = self.shared.get_state()
        full[self.start:self.start + self.n] = list(states)
        self.shared.set_state(full)

    def close(self) -> None:
        pass


class Collector:
    """Acts in `config.env.num_envs` training envs and appends what they return to `replay`.

    Args:
      config: the resolved run config.
      agent: the `Agent` (its `policy_step`, `init_act_state`).
      replay: the `ReplayBuffer` the records go to (stream i = env i).
      base_key: the run's base PRNG key; acting uses `fold_in(base_key, ACT)`.
      process_index: this host's index (seeds of its envs and RNG).
      envs: the envs to use (an `EnvSlice` of a group's shared `VectorEnv`, seeded with
        `env_seeds(config, process_index)`); default: a `VectorEnv` of its own.
    """

    def __init__(self, config, agent, replay, base_key, *, process_index: int = 0, envs=None):
        import jax

        self.config, self.agent, self.replay = config, agent, replay
        self.n = int(config.env.num_envs)
        self.num_actions = int(config.env.num_actions)
        self.action_repeat = int(config.env.action_repeat)
        self.key = jax.random.fold_in(base_key, ACT)
        self.keys = KeyStream(self.key)  # this step's key: fold_in(self.key, self.calls), host data
        seed, pid = int(config.seed), int(process_index)
        self.rng = np.random.Generator(np.random.PCG64(env_seed(seed, 101, pid)))
        # with overlap_acting a single env steps in a worker too, so that its step overlaps the
        # gradient step (`begin_step` / `end_step`)
        workers = 1 if bool(config.get("overlap_acting", False)) and self.n == 1 else None
        self.envs = VectorEnv(config.env, env_seeds(config, pid), num_workers=workers) if envs is None else envs
        self._in_flight = None
        if self.envs.num_actions is not None and int(self.envs.num_actions) != self.num_actions:
            self.envs.close()
            raise ValueError(f"config.env.num_actions={self.num_actions} but the {config.env.suite} env "
                             f"{config.env.task!r} has {self.envs.num_actions} actions")
        self.act_state = agent.init_act_state(self.n)
        self.obs: list = []
        self.env_steps = 0       # agent steps summed over envs
        self.calls = 0           # batched env steps (the acting key's counter)
        self.episodes = 0
        self.ep_return = np.zeros(self.n, np.float64)
        self.ep_length = np.zeros(self.n, np.int64)
        self.finished: list = []  # [return, frames] of episodes finished since the last `pop_finished`

    @property
    def frames(self) -> int:
        return self.env_steps * self.action_repeat

    # ------------------------------------------------------------------------------- acting
    def start(self) -> None:
        """New episodes in every env (a fresh run, or a resume without replay): reset records go to
        the replay, the acting state starts empty, episodes in flight are dropped unlogged."""
        self.obs = list(self.envs.reset())
        self.act_state = self.agent.init_act_state(self.n)
        self.ep_return[:], self.ep_length[:] = 0.0, 0
        for i, t in enumerate(self.obs):
            self._add_reset_record(i, t)

    def _add_reset_record(self, i: int, t) -> None:
        self.replay.add(i, t.image, np.zeros(self.num_actions, np.float32), 0.0, True, False)

    def step(self, params, *, prefill: bool) -> None:
        """One batched env step of every env (see the module docstring)."""
        self.begin_step(params, prefill=prefill)
        self.end_step()

    def begin_step(self, params, *, prefill: bool) -> None:
        """Acts with `params` and starts the envs' step (`VectorEnv.step_async`): with worker
        processes they step while the caller goes on; `end_step()` records what they return."""
        import jax

        image, is_first, key = self.observe()
        self.act_state, action = self.agent.policy_step(params, self.act_state, image, is_first, key, greedy=False)
        action = self.choose(np.asarray(action, np.float32), prefill=prefill)
        if prefill and not self.config.quirks.prefill_policy_action:
            self.act_state = self.act_state.replace(action=jax.numpy.asarray(action))
        env_act, stored = env_actions(self.config, action)
        self.envs.step_async(env_act)
        self._in_flight = stored

    def end_step(self) -> None:
        """Waits for the step `begin_step` started and records it."""
        stored, self._in_flight = self._in_flight, None
        self.record(self.envs.step_wait(), stored)

    def observe(self):
        """The policy's inputs for this step: (image uint8 (N, H, W, 3), is_first (N,), key)."""
        image, is_first = stack_obs(self.obs)
        return image, is_first, self.keys(self.calls)

    def choose(self, action: np.ndarray, *, prefill: bool) -> np.ndarray:
        """The executed actions float32 (N, A): the policy's `action`, or uniform random ones from
        the host RNG during pre-fill (the caller keeps the acting state's action accordingly)."""
        return random_actions(self.config, self.rng, self.n) if prefill else action

    def record(self, out: list, stored: np.ndarray) -> None:
        """The envs' new timesteps `out` (N) after acting with `stored` (N, A): replay records,
        episode statistics, counters; an env whose episode ended is reset and its reset record added."""
        self.calls += 1
        self.env_steps += self.n
        for i, t in enumerate(out):
            self.replay.add(i, t.image, stored[i], float(t.reward), False, bool(t.is_terminal))
            self.ep_return[i] += float(t.reward)
            self.ep_length[i] += 1
            if t.is_last:
                self.episodes += 1
                self.finished.append([float(self.ep_return[i]), int(self.ep_length[i]) * self.action_repeat])
                self.ep_return[i], self.ep_length[i] = 0.0, 0
                t = self.envs.reset_one(i)
                self._add_reset_record(i, t)
            self.obs[i] = t

    def pop_finished(self) -> list:
        """[return, frames] of the episodes finished since the previous call."""
        out, self.finished = self.finished, []
        return out

    # -------------------------------------------------------------------------------- state
    def get_state(self) -> dict:
        """Host state as plain values (the acting state is `act_state`, saved separately)."""
        return {
            "env_steps": self.env_steps, "calls": self.calls, "episodes": self.episodes,
            "rng": self.rng.bit_generator.state,
            "obs": list(self.obs),
            "ep_return": self.ep_return.copy(), "ep_length": self.ep_length.copy(),
            "finished": [list(e) for e in self.finished],
            "envs": self.envs.get_state(),
        }

    def set_state(self, state: dict) -> None:
        self.env_steps, self.calls = int(state["env_steps"]), int(state["calls"])
        self.episodes = int(state["episodes"])
        self.rng.bit_generator.state = state["rng"]
        self.obs = list(state["obs"])
        self.ep_return = np.asarray(state["ep_return"], np.float64).copy()
        self.ep_length = np.asarray(state["ep_length"], np.int64).copy()
        self.finished = [list(e) for e in state["finished"]]
        self.envs.set_state(state["envs"])

    def close(self) -> None:
        self.envs.close()
