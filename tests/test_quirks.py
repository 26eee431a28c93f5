"""Every `config.quirks` switch, set on a config and read back through what the program builds from it
(issue 12 item 3; docs/quirks.md §10). Each test runs both values and shows the difference each documents
(configs/common.py), so a switch that is not wired to its code fails here:

* ``mode_straight_through_logprob`` (10.5): `agent.build_networks(config)` -> the gradient reaching the
  TSSM's learned initial state (through the straight-through mode of its prior) differs between the
  values, forward values do not; same for the discrete policy's mode (`PolicyDist.from_config`);
* ``imagination_flag_shift`` (10.1): the imagination start states of `world_model_loss(..., config)`
  (the ones `train_step` imagines from) carry the documented cache / query flags, nothing else changes;
* ``episode_mask_gating`` (3.6.5, 10.2): `make_agent(config).policy_step` across a mid-stream reset:
  gating on (the original) lets the new episode attend to the previous one's tokens still in the
  cache on the steps after the reset step (its outputs depend on the old episode and differ from the
  ungated agent's), off hides them; the reset step itself and the env that did not reset agree;
* ``prefill_policy_action`` (10.8): after `Collector.step(params, prefill=True)` the acting state's
  previous action is the policy's sample (True) or the executed random action (False).

Each test fails when its key is not read (checked by hard-coding the value where the config is read).
Tiny configs, one compiled function per config value (module-scoped fixtures).
"""
import numpy as np
import pytest

import jax
import jax.numpy as jnp

from config_utils import tiny_config
from twister_jax import agent as agent_lib
from twister_jax.losses import world_model as wm_loss
from twister_jax.policy_dist import PolicyDist

W = 8  # model.context of the tiny config (asserted below)


def quirk_config(key, value, variant="fake"):
    config = tiny_config(variant, **{f"quirks.{key}": value})
    assert config.quirks[key] is value and config.model.context == W
    return config


# ------------------------------------------------------------------- world-model loss (10.1, 10.5)
B, T = 2, 12


def _batch(config):
    """A small fixed batch; row 0 resets at t = 0 and t = 5, row 1 at t = 0 only."""
    rng = np.random.default_rng(0)
    a = config.env.num_actions
    is_first = np.zeros((B, T), bool)
    is_first[:, 0] = True
    is_first[0, 5] = True
    action = np.eye(a, dtype=np.float32)[rng.integers(0, a, (B, T))]
    action[is_first] = 0.0
    reward = rng.normal(size=(B, T)).astype(np.float32)
    reward[is_first] = 0.0
    return {"image": rng.integers(0, 256, (B, T, 64, 64, 3), dtype=np.uint8), "action": action,
            "reward": reward, "is_first": is_first, "is_terminal": np.zeros((B, T), bool)}


class LossRun:
    """What `make_agent` builds for `config` (`agent.build_networks`; the quirks do not change the
    parameters, so every config gets the same initial values), on a fixed batch and noise, no dropout:

    * `forward()`: `world_model_loss` with the full config (it reads its switches from it, as
      `train_step` does through `LossConfig.from_config`): loss terms and imagination start states;
    * `observe_grad()`: the TSSM's teacher-forced pass (`observe`, which starts every episode from the
      learned initial state) under a fixed linear objective: outputs, and the gradient w.r.t. the
      TSSM's parameters (cheaper to compile than the whole loss's gradient).
    """

    def __init__(self, config):
        from flax import nnx
        self.config = config
        wm, _, _ = agent_lib.build_networks(config, jax.random.key(0))
        self.graph, self.params = nnx.split(wm, nnx.Param)
        self.mode_st = wm.tssm.mode_st_logprob
        m = config.model
        self.batch = jax.tree_util.tree_map(jnp.asarray, _batch(config))
        self.noise = wm_loss.draw_noise(jax.random.key(1), B, T, m.stoch, m.discrete)

    def forward(self):
        from flax import nnx
        graph, batch, noise, config = self.graph, self.batch, self.noise, self.config
        run = jax.jit(lambda p: wm_loss.world_model_loss(nnx.merge(graph, p), batch, noise, config,
                                                         deterministic=True))
        return jax.device_get(run(self.params))

    def observe_grad(self):
        from flax import nnx
        graph, batch, noise = self.graph, self.batch, self.noise
        post = jax.nn.one_hot(jnp.argmax(noise["gumbel_post"], -1), noise["gumbel_post"].shape[-1])
        rng = np.random.default_rng(2)

        def obj(tssm_params, rest):
            wm = nnx.merge(graph, dict(rest, tssm=tssm_params))
            out = wm.tssm.observe(post, batch["action"], batch["is_first"], noise["gumbel_prior"])
            w_deter = rng.normal(size=out["deter"].shape).astype(np.float32)
            w_logits = rng.normal(size=out["prior_logits"].shape).astype(np.float32)
            value = jnp.sum(out["deter"] * w_deter) + jnp.sum(out["prior_logits"] * w_logits)
            return value, (out["deter"], out["prior_logits"])

        rest = {k: v for k, v in self.params.items() if k != "tssm"}
        (value, outs), grads = jax.jit(jax.value_and_grad(obj, has_aux=True))(self.params["tssm"], rest)
        return jax.device_get((value, outs, grads))


@pytest.fixture(scope="module")
def default_run():
    return LossRun(tiny_config("fake"))   # every quirk True (the original)


@pytest.fixture(scope="module")
def default_forward(default_run):
    return default_run.forward()


def _leaf(x):
    return np.asarray(getattr(x, "value", x))


def test_mode_straight_through_logprob(default_run):
    off_run = LossRun(quirk_config("mode_straight_through_logprob", False))
    (v_on, outs_on, g_on), (v_off, outs_off, g_off) = default_run.observe_grad(), off_run.observe_grad()
    # forward values do not depend on the switch (the straight-through term is exactly zero) ...
    assert float(v_on) == float(v_off)
    for a, b in zip(outs_on, outs_off):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # ... the gradient reaching the learned initial state (through the mode of its prior) does
    w_on, w_off = _leaf(g_on["weight_init"]), _leaf(g_off["weight_init"])
    assert np.all(np.isfinite(w_on)) and np.all(np.isfinite(w_off)) and np.max(np.abs(w_on)) > 0
    assert np.max(np.abs(w_on - w_off)) > 1e-2 * np.max(np.abs(w_on)), (w_on[:4], w_off[:4])
    assert default_run.mode_st is True and off_run.mode_st is False


def test_mode_straight_through_logprob_policy_mode():
    """The discrete policy's greedy mode (`PolicyDist.from_config`, as `make_agent` builds its `dist`):
    same value, different gradient."""
    raw = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)), jnp.float32)
    out = {}
    for value in (True, False):
        dist = PolicyDist.from_config(quirk_config("mode_straight_through_logprob", value))
        assert dist.discrete
        out[value] = (np.asarray(dist.mode(raw)), np.asarray(jax.grad(lambda r: jnp.sum(dist.mode(r) * w))(raw)))
    np.testing.assert_array_equal(out[True][0], out[False][0])
    assert np.max(np.abs(out[True][1] - out[False][1])) > 1e-3
    assert [PolicyDist.from_config(quirk_config("mode_straight_through_logprob", v)).mode_st_logprob
            for v in (True, False)] == [True, False]


def _expected_flags(is_first, shift):
    """The documented windows (configs/common.py, imagination.window_flags), written out per position."""
    b, t = is_first.shape
    flags = np.zeros((b, t, W), np.float32)
    valid = np.zeros((b, t, W), bool)
    query = np.zeros((b, t), np.float32)
    for i in range(b):
        for j in range(t):
            oldest = max(0, j - W + 1)
            for s in range(W):
                pos = j - W + 1 + s
                if pos < 0:
                    continue
                valid[i, j, s] = True
                if shift:   # slot pos carries is_first[pos - 1]; the oldest real slot carries 1
                    flags[i, j, s] = 1.0 if pos == oldest else float(is_first[i, pos - 1])
                else:       # slot pos carries is_first[pos]
                    flags[i, j, s] = float(is_first[i, pos])
            query[i, j] = float(is_first[i, j]) if shift else 0.0
    return flags.reshape(b * t, W), query.reshape(b * t), valid.reshape(b * t, W)


def test_imagination_flag_shift(default_run, default_forward):
    off_run = LossRun(quirk_config("imagination_flag_shift", False))
    outs = {True: default_forward, False: off_run.forward()}
    is_first = _batch(default_run.config)["is_first"]
    for shift, (_, aux) in outs.items():
        flags, query, valid = _expected_flags(is_first, shift)
        start = aux["start"]
        np.testing.assert_array_equal(np.asarray(start.cache.flags), flags, err_msg=f"shift={shift}")
        np.testing.assert_array_equal(np.asarray(start.query_flag), query, err_msg=f"shift={shift}")
        np.testing.assert_array_equal(np.asarray(start.cache.valid), valid, err_msg=f"shift={shift}")
    (loss_on, aux_on), (loss_off, aux_off) = outs[True], outs[False]
    on, off = aux_on["start"], aux_off["start"]
    # row 0, t = 5 (a reset; the window of t ends with t's own token): shifted, the query flag is set
    # and t's slot carries is_first[4] = 0; aligned, the query is 0 and t's slot carries the reset
    assert on.query_flag[5] == 1.0 and off.query_flag[5] == 0.0
    assert on.cache.flags[5, -1] == 0.0 and off.cache.flags[5, -1] == 1.0
    # only the flags change: the start latents, the KV windows and the loss are the same
    np.testing.assert_array_equal(np.asarray(on.stoch), np.asarray(off.stoch))
    np.testing.assert_array_equal(np.asarray(on.cache.k[0]), np.asarray(off.cache.k[0]))
    assert float(loss_on) == float(loss_off)


# ------------------------------------------------------------------------- acting (3.6.5, 10.2)
N, STEPS, RESET_AT = 2, 8, 3


@pytest.fixture(scope="module")
def gating_agents():
    agents = {v: agent_lib.make_agent(quirk_config("episode_mask_gating", v)) for v in (True, False)}
    params = agents[True].init_state(jax.random.key(0)).params
    return agents, params


def _stream(seed):
    """(STEPS, N, 64, 64, 3) frames; env 0 starts a new episode at RESET_AT, env 1 never does."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (STEPS, N, 64, 64, 3), dtype=np.uint8)
    firsts = np.zeros((STEPS, N), bool)
    firsts[0] = True
    firsts[RESET_AT, 0] = True
    return images, firsts


def _act(agent, params, images, firsts):
    """Greedy acting over the stream: per step (newest key of the last block (N, D), action (N, A))."""
    act = agent.init_act_state(N)
    out = []
    for i in range(STEPS):
        act, a = agent.policy_step(params, act, images[i], firsts[i], jax.random.key(i), greedy=True)
        out.append((np.asarray(act.cache.k[-1][:, -1]), np.asarray(a), np.asarray(act.stoch)))
    return out


def test_episode_mask_gating(gating_agents):
    agents, params = gating_agents
    images, firsts = _stream(0)
    other, _ = _stream(1)
    # a different previous episode for env 0: frames before the reset replaced
    images_b = images.copy()
    images_b[:RESET_AT, 0] = other[:RESET_AT, 0]
    runs = {v: (_act(agents[v], params, images, firsts), _act(agents[v], params, images_b, firsts))
            for v in (True, False)}

    # gating off: the reset hides the previous episode; env 0's new episode does not depend on it
    for i in range(RESET_AT, STEPS):
        a, b = runs[False][0][i], runs[False][1][i]
        np.testing.assert_allclose(a[0][0], b[0][0], atol=1e-5, err_msg=f"ungated step {i}")
        np.testing.assert_array_equal(a[1][0], b[1][0])
    # gating on (the original): at the reset step the mask is applied (a reset in the call) ...
    a, b = runs[True][0][RESET_AT], runs[True][1][RESET_AT]
    np.testing.assert_allclose(a[0][0], b[0][0], atol=1e-5)
    # ... on the next steps (no reset in the call) env 0 attends to the previous episode's tokens
    for i in range(RESET_AT + 1, STEPS):
        a, b = runs[True][0][i], runs[True][1][i]
        assert np.max(np.abs(a[0][0] - b[0][0])) > 1e-4, f"gated step {i}: no leak"

    # the two values on the same stream: identical up to the reset step and for env 1 (one episode,
    # nothing to hide); env 0's latent differs from the first step after the reset on
    on, off = runs[True][0], runs[False][0]
    for i in range(STEPS):
        np.testing.assert_allclose(on[i][0][1], off[i][0][1], atol=1e-5, err_msg=f"env 1 step {i}")
        np.testing.assert_array_equal(on[i][1][1], off[i][1][1])
        np.testing.assert_array_equal(on[i][2], off[i][2])     # the posterior: encoder only
        if i <= RESET_AT:
            np.testing.assert_allclose(on[i][0][0], off[i][0][0], atol=1e-5, err_msg=f"env 0 step {i}")
            np.testing.assert_array_equal(on[i][1][0], off[i][1][0])
        else:
            assert np.max(np.abs(on[i][0][0] - off[i][0][0])) > 1e-4, f"env 0 step {i}"


# --------------------------------------------------------------------------------- pre-fill (10.8)
def test_prefill_policy_action(gating_agents):
    """`Collector.step(params, prefill=True)` (what the training loop calls while pre-filling): the
    acting state is the policy step's, except its previous action: the policy's own sample (the
    original) or the executed random action."""
    from twister_jax.acting import random_actions, stack_obs
    from twister_jax.collector import Collector
    from twister_jax.replay import ReplayBuffer

    agent, params = gating_agents[0][True], gating_agents[1]   # the agent does not read this switch
    for value in (True, False):
        differs = []
        config = tiny_config("fake", **{"quirks.prefill_policy_action": value, "env.num_envs": N})
        assert config.quirks.prefill_policy_action is value
        replay = ReplayBuffer(1000, int(config.seq_len), N, tuple(config.env.image_size) + (3,),
                              int(config.env.num_actions))
        collector = Collector(config, agent, replay, jax.random.key(int(config.seed)))
        try:
            collector.start()
            for _ in range(3):
                # what the step will compute: the policy step on the current observations, and the
                # random actions the host RNG will draw
                image, is_first = stack_obs(collector.obs)
                key = jax.random.fold_in(collector.key, collector.calls)
                policy_state, policy_action = agent.policy_step(params, collector.act_state, image, is_first, key)
                rng = np.random.Generator(np.random.PCG64())
                rng.bit_generator.state = collector.rng.bit_generator.state
                executed = random_actions(config, rng, N)
                collector.step(params, prefill=True)
                act = collector.act_state
                np.testing.assert_array_equal(np.asarray(act.stoch), np.asarray(policy_state.stoch))
                np.testing.assert_array_equal(np.asarray(act.cache.k[-1]), np.asarray(policy_state.cache.k[-1]))
                expected = np.asarray(policy_action) if value else executed
                np.testing.assert_array_equal(np.asarray(act.action), expected, err_msg=f"quirk={value}")
                differs.append(not np.array_equal(np.asarray(policy_action), executed))
        finally:
            collector.close()
        assert any(differs), value   # the candidates differed at some step: the check told them apart
