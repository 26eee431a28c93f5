"""World model and world-model loss at the tiny config (docs/original.md §3, §4, §5.1, §12.5)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from config_utils import get_config
from twister_jax import port
from twister_jax.losses import world_model as wml
from twister_jax.networks.world_model import WorldModel


@pytest.fixture(scope="module")
def config():
    return get_config("tiny", "fake")


def _batch(config, seed=0):
    rng = np.random.default_rng(seed)
    b, t, a = config.batch_size, config.seq_len, config.env.num_actions
    is_first = np.zeros((b, t), bool)
    is_first[0, 0] = True
    is_first[1, t // 2] = True
    action = np.eye(a, dtype=np.float32)[rng.integers(0, a, (b, t))]
    action[is_first] = 0.0
    reward = rng.normal(size=(b, t)).astype(np.float32)
    reward[is_first] = 0.0
    is_terminal = np.zeros((b, t), bool)
    is_terminal[1, t // 2 - 1] = True
    return {"image": rng.integers(0, 256, (b, t, 64, 64, 3), dtype=np.uint8), "action": action,
            "reward": reward, "is_first": is_first, "is_terminal": is_terminal}


def _noise(config, seed=1):
    m = config.model
    noise = wml.draw_noise(jax.random.key(seed), config.batch_size, config.seq_len, m.stoch, m.discrete,
                           augment=False)
    rng = np.random.default_rng(seed)
    noise["aug_image"] = rng.integers(0, 256, (config.batch_size, config.seq_len, 64, 64, 3), dtype=np.uint8)
    return noise


def _loss_fn(wm, cfg, *, deterministic=True):
    graphdef, params, rest = nnx.split(wm, nnx.Param, ...)
    traces = []

    def f(params, batch, noise, key):
        traces.append(1)
        return wml.loss_fn(params, graphdef, rest, batch, noise, cfg, deterministic=deterministic,
                           dropout_key=key)
    return jax.jit(f), params, traces


@pytest.fixture(scope="module")
def f32_run(config):
    wm = WorldModel.from_config(config, nnx.Rngs(0))
    f, params, traces = _loss_fn(wm, wml.LossConfig.from_config(config), deterministic=False)
    batch, noise = _batch(config), _noise(config)
    out = f(params, batch, noise, jax.random.key(3))
    return dict(wm=wm, f=f, params=params, traces=traces, batch=batch, noise=noise, out=out)


def test_initial_reward_predictions_and_loss(config, f32_run):
    total, aux = f32_run["out"]
    # zero-initialised reward output layer: uniform bins -> mean 0, two-hot loss ln(255) (docs/original.md §12.5)
    np.testing.assert_allclose(float(aux["losses"]["model_reward"]), math.log(config.model.bins), rtol=1e-5)
    wm = f32_run["wm"]
    feat = jnp.zeros((3, config.model.stoch * config.model.discrete + config.model.hidden))
    np.testing.assert_allclose(np.asarray(wm.reward_mean(wm.reward_logits(feat))), 0.0, atol=1e-5)
    # continue loss near ln 2, contrastive near ln(N_k) order of magnitude, everything finite
    assert 0.3 < float(aux["losses"]["model_discount"]) < 1.5
    assert np.isfinite(float(total))
    assert all(np.isfinite(float(v)) for v in aux["losses"].values())
    for k in range(config.model.contrastive_steps):
        assert f"model_contrastive_{k}" in aux["losses"]
    assert set(aux["metrics"]) >= {"acc_con"} | {f"acc_con_{k}" for k in range(1, config.model.contrastive_steps)}
    w = sum(aux["weights"][f"model_contrastive_{k}"] for k in range(config.model.contrastive_steps))
    np.testing.assert_allclose(float(w), config.loss.contrastive, rtol=1e-6)
    recomputed = sum(float(aux["weights"][n]) * float(v) for n, v in aux["losses"].items())
    np.testing.assert_allclose(float(total), recomputed, rtol=1e-5)


def test_start_states_shapes_and_stop_gradient(config, f32_run):
    _, aux = f32_run["out"]
    m = config.model
    n = config.batch_size * config.seq_len
    start = aux["start"]
    assert start.stoch.shape == (n, m.stoch, m.discrete)
    assert start.deter.shape == (n, m.hidden)
    assert start.logits.shape == (n, m.stoch, m.discrete)
    assert len(start.cache.k) == m.blocks and start.cache.k[0].shape == (n, m.context, m.hidden)
    assert start.cache.flags.shape == (n, m.context) and start.query_flag.shape == (n,)
    np.testing.assert_array_equal(np.asarray(aux["start_cont"]),
                                  1.0 - f32_run["batch"]["is_terminal"].reshape(-1).astype(np.float32))

    # the start states carry no gradient: a loss built on them differentiates to zero
    wm = f32_run["wm"]
    graphdef, params, rest = nnx.split(wm, nnx.Param, ...)
    cfg = wml.LossConfig.from_config(config)

    def start_only(params):
        _, aux = wml.loss_fn(params, graphdef, rest, f32_run["batch"], f32_run["noise"], cfg, deterministic=True)
        s = aux["start"]
        return jnp.sum(s.deter) + jnp.sum(s.stoch) + sum(jnp.sum(k) for k in s.cache.k)

    grads = jax.jit(jax.grad(start_only))(params)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree_util.tree_leaves(grads))


def test_jit_static_shapes_and_dropout(config, f32_run):
    f, params, traces = f32_run["f"], f32_run["params"], f32_run["traces"]
    n0 = len(traces)
    total_a, _ = f(params, _batch(config, seed=5), _noise(config, seed=6), jax.random.key(3))
    total_b, _ = f(params, _batch(config, seed=5), _noise(config, seed=6), jax.random.key(4))
    assert len(traces) == n0, "new data of the same shapes must not retrace"
    assert float(total_a) != float(total_b), "the dropout key must change the loss when not deterministic"
    with pytest.raises(ValueError, match="key"):
        wml.world_model_loss(f32_run["wm"], f32_run["batch"], f32_run["noise"], config, deterministic=False)


def test_bfloat16_close_to_float32(config, f32_run):
    # same parameters (float32 storage) and the same dropout key: only the compute dtype differs
    wm16 = WorldModel.from_config(config, nnx.Rngs(0), dtype=jnp.bfloat16)
    f, params, _ = _loss_fn(wm16, wml.LossConfig.from_config(config), deterministic=False)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(f32_run["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    t16, a16 = f(params, f32_run["batch"], f32_run["noise"], jax.random.key(3))
    t32, a32 = f32_run["out"]
    assert np.isfinite(float(t16))
    np.testing.assert_allclose(float(t16), float(t32), rtol=0.05)
    for name in ("model_image", "model_reward", "model_discount", "kl_prior", "model_contrastive_0"):
        np.testing.assert_allclose(float(a16["losses"][name]), float(a32["losses"][name]), rtol=0.1, atol=0.05,
                                   err_msg=name)


def test_torch_map_round_trip_and_errors(config):
    wm = WorldModel.from_config(config, nnx.Rngs(0))
    pure = nnx.to_pure_dict(nnx.state(wm, nnx.Param))
    names = {}
    for name, (path, conv) in port.torch_map(wm).items():
        value = pure
        for k in path:
            value = value[k]
        names[name] = np.asarray(value)
    prefixes = {n.split(".")[0] for n in names}
    assert prefixes == {"encoder_network", "decoder_network", "rssm", "reward_network", "continue_network",
                        "contrastive_network"}
    assert len(names) == len(jax.tree_util.tree_leaves(pure)), "every parameter has an original name"

    # converters are reorderings: invert them to build an original-layout state dict, load it into a fresh model
    from golden_cases.world_model_grads import to_torch_layout
    sd = {}
    for name, (path, conv) in port.torch_map(wm).items():
        shape = _torch_shape(names[name].shape, conv)
        sd[name] = to_torch_layout(names[name], shape, conv).astype(np.float32)
    other = WorldModel.from_config(config, nnx.Rngs(1))
    port.load_torch_params(other, sd)
    for a, b in zip(jax.tree_util.tree_leaves(nnx.state(wm, nnx.Param)),
                    jax.tree_util.tree_leaves(nnx.state(other, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    bad = dict(sd)
    del bad["rssm.weight_init"]
    bad["reward_network.extra.weight"] = np.zeros(3, np.float32)
    bad["rssm.dynamics_predictor.bias"] = np.zeros(7, np.float32)
    with pytest.raises(port.ParameterImportError) as err:
        port.load_torch_params(other, bad)
    msg = str(err.value)
    assert "rssm.weight_init" in msg and "reward_network.extra.weight" in msg and "rssm.dynamics_predictor.bias" in msg


def _torch_shape(our_shape, conv):
    """Original shape of a parameter whose converter is a transpose (found by trying the permutations)."""
    import itertools
    for perm in itertools.permutations(range(len(our_shape))):
        shape = tuple(our_shape[i] for i in perm)
        try:
            converted = conv(np.zeros(shape))
        except ValueError:
            continue
        if np.shape(converted) == tuple(our_shape):
            probe = np.arange(int(np.prod(shape))).reshape(shape)
            if sorted(np.asarray(conv(probe)).reshape(-1).tolist()) == list(range(probe.size)):
                return shape
    raise AssertionError(f"no original shape for {our_shape}")
