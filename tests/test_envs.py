"""Protocol tests of twister_jax.envs (docs/original.md §1.1, §1.2; docs/interfaces.md §3, §8). Fast: tiny limits, few steps."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from twister_jax.envs import TimeStep, VectorEnv, make_env
from twister_jax.envs.fake import FakeEnv
from twister_jax.suites import ATARI_GAMES, DMC_TASKS

REPO = pathlib.Path(__file__).resolve().parents[1]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        assert (x.reward, x.is_first, x.is_last, x.is_terminal) == (y.reward, y.is_first, y.is_last, y.is_terminal)


def _check_obs(ts, shape=(64, 64, 3)):
    assert isinstance(ts, TimeStep)
    assert ts.image.shape == shape and ts.image.dtype == np.uint8
    assert isinstance(ts.reward, np.float32)


def test_import_envs_does_not_import_jax():
    code = "import sys, twister_jax.envs, twister_jax.envs.fake, twister_jax.envs.vector; assert 'jax' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------ Atari
atari = pytest.importorskip("twister_jax.envs.atari")


def _atari_cfg(**kw):
    c = dict(suite="atari", task="pong", action_repeat=4, time_limit_frames=108_000, noop_max=30, sticky=0.0,
             image_size=(64, 64), num_actions=6)
    c.update(kw)
    return c


@pytest.fixture(scope="module")
def pong():
    env = atari.AtariEnv("pong", seed=7)
    yield env
    env.close()


def test_atari_reset_obs_and_noops(pong):
    for seed in (1, 2, 3):
        ts = pong.reset(seed=seed)
        _check_obs(ts)
        assert ts.is_first and not ts.is_last and not ts.is_terminal and ts.reward == 0
        noops = int(np.random.Generator(np.random.PCG64(seed)).integers(1, 31))
        assert pong._ale.getEpisodeFrameNumber() == noops  # U{1..30} no-ops after reset_game
        assert not pong._buffers[1].any()                  # buffer 1 zeroed at reset


def test_atari_action_repeat_and_max_pool(pong):
    import cv2
    pong.reset(seed=4)
    for a in (1, 2, 3):
        pong.step(a)
    state = pong.get_state()
    f0 = pong._ale.getEpisodeFrameNumber()
    ts = pong.step(2)
    assert pong._ale.getEpisodeFrameNumber() == f0 + 4  # frame skip 4
    # replay the same 4 frames by hand on the raw ALE: screens after frames 3 and 4, max, INTER_AREA
    pong.set_state(state)
    ale, act = pong._ale, pong._actions[2]
    screens, reward = [], 0.0
    for _ in range(4):
        reward += ale.act(act)
        screens.append(ale.getScreenRGB())
    expected = cv2.resize(np.maximum(screens[2], screens[3]), (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(ts.image, expected)
    assert ts.reward == np.float32(reward)


class _StubALE:
    """Game over after `over_at` frames in total; screen value = frame number."""

    def __init__(self, over_at):
        self.frame, self.over_at = 0, over_at

    def act(self, a):
        self.frame += 1
        return 1.0

    def game_over(self, with_truncation=False):
        return self.frame >= self.over_at

    def getScreenRGB(self, out):
        out[...] = self.frame


def test_atari_game_over_mid_repeat_keeps_buffers():
    env = atari.AtariEnv("pong", seed=0, noop_max=0)
    env.reset()
    env._ale = _StubALE(over_at=6)
    ts1 = env.step(0)  # frames 1..4: buffers = screens 3 and 4 -> max 4
    assert np.all(ts1.image == 4) and ts1.reward == 4 and not ts1.is_last
    ts2 = env.step(0)  # frames 5, 6 -> game over at frame 6, buffers not refreshed
    assert ts2.is_last and ts2.is_terminal and ts2.reward == 2
    np.testing.assert_array_equal(ts2.image, ts1.image)
    with pytest.raises(RuntimeError):
        env.step(0)


def test_atari_frame_cap_truncates():
    env = make_env(_atari_cfg(time_limit_frames=40), seed=0)
    env.reset()
    out = [env.step(0) for _ in range(10)]
    assert [t.is_last for t in out] == [False] * 9 + [True]
    assert not out[-1].is_terminal  # truncation, not game over
    env.close()


def test_atari_determinism_under_seed_and_state_round_trip(pong):
    actions = np.random.default_rng(0).integers(0, 6, size=40)
    other = atari.AtariEnv("pong", seed=123)

    def play(env, seed):
        return [env.reset(seed=seed)] + [env.step(int(a)) for a in actions[:20]]

    _same(play(pong, 11), play(other, 11))
    state = pong.get_state()
    cont = [pong.step(int(a)) for a in actions[20:]]
    other.reset(seed=99)  # a different episode in flight, then overwritten
    other.set_state(state)
    _same(cont, [other.step(int(a)) for a in actions[20:]])
    pong.set_state(state)
    _same(cont, [pong.step(int(a)) for a in actions[20:]])
    other.close()


def test_atari_minimal_action_sets_all_26_games():
    import ale_py
    import ale_py.roms

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    sizes = {}
    for game in ATARI_GAMES:
        ale.loadROM(ale_py.roms.get_rom_path(atari.rom_id(game)))
        sizes[game] = len(ale.getMinimalActionSet())
    assert sizes == ATARI_GAMES
    assert len(sizes) == 26


def test_atari_unknown_game_and_action_count_errors():
    with pytest.raises(ValueError, match="space_invaders.*alien.*up_n_down"):
        atari.AtariEnv("space_invaders")
    with pytest.raises(ValueError, match="num_actions=18.*6"):
        make_env(_atari_cfg(num_actions=18), seed=0)


# ------------------------------------------------------------------------------------------- DMC
def _dmc_cfg(**kw):
    c = dict(suite="dmc", task="cartpole_balance", action_repeat=2, time_limit_frames=1_000, noop_max=0,
             camera=0, image_size=(64, 64), num_actions=1, fast_render=False)
    c.update(kw)
    return c


@pytest.fixture(scope="module")
def cartpole():
    pytest.importorskip("dm_control")
    env = make_env(_dmc_cfg(time_limit_frames=10), seed=3)
    yield env
    env.close()


def test_dmc_obs_time_limit_and_action_repeat(cartpole):
    ts = cartpole.reset()
    _check_obs(ts)
    assert ts.is_first and ts.reward == 0
    physics = cartpole.env.physics
    t0 = physics.data.time
    out = [cartpole.step(np.array([0.3], np.float32)) for _ in range(5)]
    control_dt = physics.timestep() * cartpole.env._env._n_sub_steps
    assert physics.data.time == pytest.approx(t0 + 5 * 2 * control_dt)  # action repeat 2
    assert [t.is_last for t in out] == [False] * 4 + [True]           # 10 frames = 5 agent steps
    assert not any(t.is_terminal for t in out)                        # DMC never terminates
    assert all(0.0 <= t.reward <= 2.0 for t in out)                   # sum of two rewards in [0, 1]


def test_dmc_actions_clipped_and_state_round_trip(cartpole):
    cartpole.reset(seed=5)
    cartpole.step(np.array([0.5], np.float32))
    state = cartpole.get_state()
    big = [cartpole.step(np.array([7.0], np.float32)) for _ in range(3)]
    cartpole.set_state(state)
    one = [cartpole.step(np.array([1.0], np.float32)) for _ in range(3)]
    _same(big, one)  # clipped to [-1, 1]
    fresh = make_env(_dmc_cfg(time_limit_frames=10), seed=77)
    fresh.reset()
    fresh.set_state(state)
    _same(one, [fresh.step(np.array([1.0], np.float32)) for _ in range(3)])
    fresh.close()


# the model fields each task's episode initialisation randomises (dm_control suite reacher.py, finger.py)
RANDOMISED_FIELDS = {"reacher_easy": ("geom_pos", "target"), "finger_turn_easy": ("site_pos", "target")}


@pytest.mark.parametrize("task", sorted(RANDOMISED_FIELDS))
def test_dmc_state_round_trip_restores_randomised_model_fields(task):
    """Tasks whose episodes randomise MODEL fields (reacher: the target's geom position; finger turn:
    the target site's position): a state saved mid-episode and restored into a FRESH env of another
    seed (another target) replays the same frames and rewards (resume, docs/interfaces.md §3)."""
    pytest.importorskip("dm_control")
    field, name = RANDOMISED_FIELDS[task]
    actions = np.random.default_rng(0).uniform(-1, 1, (8, 2)).astype(np.float32)
    env = make_env(_dmc_cfg(task=task, num_actions=2), seed=1)
    fresh = make_env(_dmc_cfg(task=task, num_actions=2), seed=2)
    target = lambda e: np.array(getattr(e.env.physics.named.model, field)[name])
    try:
        env.reset(seed=11)
        for a in actions[:3]:
            env.step(a)
        state = env.get_state()
        after = [env.step(a) for a in actions[3:]]
        fresh.reset(seed=12)
        # the fresh env's episode has another target (else this test would not test the model fields)
        assert not np.allclose(target(fresh), target(env)), (target(fresh), target(env))
        fresh.set_state(state)
        _same(after, [fresh.step(a) for a in actions[3:]])
        np.testing.assert_array_equal(target(fresh), target(env))
    finally:
        env.close()
        fresh.close()


def test_dmc_unknown_task_lists_the_20():
    pytest.importorskip("dm_control")
    from twister_jax.envs.dmc import DMCEnv

    with pytest.raises(ValueError, match="walker_fly") as e:
        DMCEnv("walker_fly")
    assert all(t in str(e.value) for t in DMC_TASKS) and len(DMC_TASKS) == 20


# ------------------------------------------------------------------------------------------- fake
def _oracle(env: FakeEnv, image):
    """Reads the target from the image alone."""
    h, w = image.shape[:2]
    a = env.num_actions
    if env.discrete:
        return int(np.argmax([image[:, k * w // a:(k + 1) * w // a].mean() for k in range(a)]))
    return np.array([1.0 if image[i * h // a:(i + 1) * h // a, w // 2:].mean() > image[i * h // a:(i + 1) * h // a,
                     :w // 2].mean() else -1.0 for i in range(a)], np.float32)


@pytest.mark.parametrize("task,num_actions", [("discrete", 3), ("continuous", 2)])
def test_fake_reward_follows_the_image(task, num_actions):
    env = FakeEnv(task, seed=0, num_actions=num_actions, time_limit_frames=50)
    ts = env.reset()
    _check_obs(ts)
    rng = np.random.default_rng(12345)  # not the env's seed: PCG64(0) would replay its targets
    oracle, rand, lengths = 0.0, 0.0, 0
    while not ts.is_last:
        state = env.get_state()
        ra = rng.integers(0, num_actions) if env.discrete else rng.uniform(-1, 1, num_actions)
        rand += float(env.step(ra).reward)
        env.set_state(state)
        ts = env.step(_oracle(env, ts.image))
        oracle += float(ts.reward)
        lengths += 1
        assert not ts.is_terminal
    assert lengths == 50 and oracle == 50.0  # the image tells the paying action every step
    assert rand < 30.0


def test_fake_state_round_trip_and_seed():
    a, b = FakeEnv("discrete", seed=1), FakeEnv("discrete", seed=2)
    _same([a.reset(seed=5)] + [a.step(i % 3) for i in range(10)], [b.reset(seed=5)] + [b.step(i % 3) for i in range(10)])
    s = a.get_state()
    cont = [a.step(i % 3) for i in range(10)]
    b.set_state(s)
    _same(cont, [b.step(i % 3) for i in range(10)])


# ----------------------------------------------------------------------------------------- vector
FAKE = dict(suite="fake", task="discrete", num_actions=3, action_repeat=1, time_limit_frames=4, image_size=(64, 64))


def test_vector_auto_reset_protocol_in_process():
    v = VectorEnv(FAKE, [1, 2], num_workers=0)
    assert all(t.is_first for t in v.reset())
    flags = [[(t.is_first, t.is_last) for t in v.step([0, 1])] for _ in range(6)]
    assert flags[3] == [(False, True)] * 2       # 4th step truncates
    assert flags[4] == [(True, False)] * 2       # next call: the reset step, action ignored
    assert flags[5] == [(False, False)] * 2
    # explicit reset_one after is_last cancels the pending auto-reset
    for _ in range(2):
        v.step([0, 0])
    assert v.step([0, 0])[0].is_last
    assert v.reset_one(0).is_first
    out = v.step([0, 0], mask=[True, False])
    assert not out[0].is_first and out[1] is None
    assert v.step([0, 0], mask=[False, True])[1].is_first  # env 1 was still pending
    v.close()


def test_vector_exception_ends_episode_cleanly(caplog):
    v = VectorEnv(FAKE, [1, 2], num_workers=0)
    first = v.reset()
    guarded = v._local.envs[0]
    original = guarded.env.step

    def boom(action):
        raise FloatingPointError("emulator exploded")

    guarded.env.step = boom
    with caplog.at_level("WARNING"):
        out = v.step([0, 0])
    assert "emulator exploded" in caplog.text
    assert out[0].is_last and out[0].error and not out[0].is_terminal and out[0].reward == 0
    np.testing.assert_array_equal(out[0].image, first[0].image)
    assert not out[1].is_last
    guarded.env.step = original
    nxt = v.step([0, 0])
    assert nxt[0].is_first and not nxt[1].is_first
    v.close()


def test_vector_workers_match_in_process_and_state_round_trip():
    seeds = [3, 4, 5]
    acts = np.random.default_rng(1).integers(0, 3, size=(12, 3))
    local = VectorEnv(FAKE, seeds, num_workers=0)
    with VectorEnv(FAKE, seeds, num_workers=2) as workers:
        _same(local.reset(), workers.reset())
        for a in acts[:5]:
            _same(local.step(list(a)), workers.step(list(a)))
        state = workers.get_state()
        assert [s["pending_reset"] for s in state] == [False, False, False]
        cont = [workers.step(list(a)) for a in acts[5:]]
        local.set_state(state)
        for a, ref in zip(acts[5:], cont):
            _same(local.step(list(a)), ref)
        workers.set_state(state)
        for a, ref in zip(acts[5:], cont):
            _same(workers.step(list(a)), ref)
    local.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_vector_workers_survive_a_process_group_signal(sig):
    """Ctrl-C or `timeout` signal the whole process group: the trainer must be able to finish its step
    and checkpoint, so its env workers ignore the signal and keep stepping until closed."""
    seeds = [3, 4]
    local = VectorEnv(FAKE, seeds, num_workers=0)
    with VectorEnv(FAKE, seeds, num_workers=2) as workers:
        _same(local.reset(), workers.reset())
        for p in workers._procs:
            os.kill(p.pid, sig)
        time.sleep(0.5)
        assert all(p.is_alive() for p in workers._procs)
        for a in ([0, 1], [2, 2], [1, 0]):
            _same(local.step(a), workers.step(a))
        procs = list(workers._procs)
    assert not any(p.is_alive() for p in procs)  # close() still ends them
    local.close()
