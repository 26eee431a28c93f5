"""Acting on the host: PRNG purposes, action conversion, and greedy evaluation episodes.

Used by the training envs' `Collector`, the loop's `Evaluator` and `twister_jax.evaluate`; the device
side is `agent.policy_step`; the envs are a `twister_jax.envs.VectorEnv`. Evaluation follows docs/original.md §1.3 and docs/interfaces.md §3: `eval_envs` envs play a fixed
quota of the episodes each, seeded per episode, every episode from an empty KV cache.
"""
from __future__ import annotations

import functools

import numpy as np

from twister_jax.policy_dist import is_discrete

# fold_in / seed purposes of a run (docs/interfaces.md §4)
INIT, TRAIN, ACT, EVAL, FIGURES = 0, 1, 2, 3, 4


def env_seed(seed: int, *purpose: int) -> int:
    """A 31-bit env seed for (seed, purpose...), independent between purposes."""
    return int(np.random.SeedSequence([int(seed), *[int(p) for p in purpose]]).generate_state(1)[0] & 0x7FFFFFFF)


@functools.lru_cache(maxsize=None)
def _fold_block_jit(size: int):
    import jax
    import jax.numpy as jnp

    def block(key, start):
        data = start + jnp.arange(size, dtype=jnp.uint32)
        return jax.random.key_data(jax.vmap(lambda d: jax.random.fold_in(key, d))(data))
    return jax.jit(block)


class KeyStream:
    """The keys `fold_in(key, i)` for i = 0, 1, 2, ... as host arrays: the raw key data, uint32
    (2,) for the default threefry keys, which the agent's `policy_step` accepts in place of a key.

    One jitted call computes `block` of them at once (the same bits as `fold_in(key, i)` one by one),
    so an env step costs no device dispatch for its key. Stateless between blocks: `key(i)` depends
    only on (key, i), so a resumed run gets the same keys.
    """

    def __init__(self, key, block: int = 256):
        self.key, self.block = key, int(block)
        self._start, self._data = None, None

    def __call__(self, i: int) -> np.ndarray:
        i = int(i)
        if self._data is None or not self._start <= i < self._start + self.block:
            self._start = i - i % self.block
            self._data = np.asarray(_fold_block_jit(self.block)(self.key, np.uint32(self._start)))
        return self._data[i - self._start]


def stack_obs(timesteps):
    """Timesteps of N envs -> (images (N, H, W, 3) uint8, is_first (N,) bool)."""
    image = np.stack([np.asarray(t.image, np.uint8) for t in timesteps])
    is_first = np.array([bool(t.is_first) for t in timesteps])
    return image, is_first


@functools.lru_cache(maxsize=None)
def _eye(n: int) -> np.ndarray:
    out = np.eye(n, dtype=np.float32)
    out.flags.writeable = False
    return out


def env_actions(config, action: np.ndarray):
    """Policy output (N, A) float32 -> (per-env env actions, stored action vectors (N, A))."""
    action = np.asarray(action, np.float32)
    if is_discrete(config):
        idx = action.argmax(-1)
        return [int(i) for i in idx], _eye(int(config.env.num_actions))[idx]
    vec = np.clip(action, -1.0, 1.0).astype(np.float32)
    return list(vec), vec


def random_actions(config, rng: np.random.Generator, n: int) -> np.ndarray:
    """Pre-fill actions (docs/original.md §1.1 / §1.2): uniform one-hot, or uniform in [-1, 1]^A; float32 (N, A)."""
    a = config.env.num_actions
    if is_discrete(config):
        return np.eye(a, dtype=np.float32)[rng.integers(0, a, size=n)]
    return rng.uniform(-1.0, 1.0, size=(n, a)).astype(np.float32)


# ------------------------------------------------------------------------------------ evaluation
def eval_quotas(episodes: int, envs: int) -> list[int]:
    """Episodes per env: a fixed quota each, summing to `episodes` (docs/interfaces.md §3)."""
    return [episodes // envs + (1 if i < episodes % envs else 0) for i in range(envs)]


def run_episodes(agent, params, config, env_group, episodes: int, key, *,
                 should_stop=lambda: False, record_first: bool = False):
    """Greedy evaluation episodes on `env_group` (a `VectorEnv`) (docs/original.md §1.3, docs/interfaces.md §3), batched `policy_step`.

    Env i plays `eval_quotas(episodes, n)[i]` episodes; episode j (global index: env 0's first, ...)
    is reset with seed `env_seed(config.seed, EVAL, j)`. Every episode starts with an empty acting
    state (`reset_act_state`). Envs whose quota is done idle (not stepped).

    Returns:
      dict(returns, lengths (frames), frames (list of uint8 frames of the first episode, if asked)),
      or None when `should_stop()` became true before the end.
    """
    n = env_group.n
    quotas = eval_quotas(episodes, n)
    starts = np.cumsum([0] + quotas[:-1])
    played = np.zeros(n, int)
    active = np.array([q > 0 for q in quotas])
    ts = [env_group.reset_one(i, seed=env_seed(config.seed, EVAL, starts[i])) if active[i] else None
          for i in range(n)]
    blank = next(t for t in ts if t is not None)
    ts = [t if t is not None else blank for t in ts]
    act_state = agent.init_act_state(n)
    act_state = agent.reset_act_state(act_state, np.ones(n, bool))
    ret, length = np.zeros(n), np.zeros(n, int)
    returns, lengths = [[] for _ in range(n)], [[] for _ in range(n)]
    frames = [np.asarray(ts[0].image)] if record_first else None
    recording = record_first
    keys = KeyStream(key)  # step t's key: fold_in(key, t)
    t = 0
    while active.any():
        if should_stop():
            return None
        image, is_first = stack_obs(ts)
        act_state, action = agent.policy_step(params, act_state, image, is_first,
                                              keys(t), greedy=True)
        env_act, _ = env_actions(config, np.asarray(action))
        out = env_group.step(env_act, mask=active)
        t += 1
        reset_mask = np.zeros(n, bool)
        for i in range(n):
            if not active[i]:
                continue
            step_ts = out[i]
            ret[i] += float(step_ts.reward)
            length[i] += 1
            ts[i] = step_ts
            if recording and i == 0:
                frames.append(np.asarray(step_ts.image))
            if step_ts.is_last:
                returns[i].append(float(ret[i]))
                lengths[i].append(int(length[i]) * int(config.env.action_repeat))
                ret[i], length[i] = 0.0, 0
                played[i] += 1
                if i == 0:
                    recording = False
                if played[i] < quotas[i]:
                    ts[i] = env_group.reset_one(i, seed=env_seed(config.seed, EVAL, starts[i] + played[i]))
                    reset_mask[i] = True
                else:
                    active[i] = False
        if reset_mask.any():
            act_state = agent.reset_act_state(act_state, reset_mask)
    flat_r = [r for rs in returns for r in rs]
    flat_l = [x for ls in lengths for x in ls]
    return {"returns": flat_r, "lengths": flat_l, "frames": frames}
