"""The composite world model (spec 3, 4): encoder, TSSM, decoder, reward/continue heads, AC-CPC heads.

`WorldModel` holds the parts under the original's state-dict names (`torch_map` covers
``encoder_network.``, ``decoder_network.``, ``rssm.``, ``reward_network.``, ``continue_network.``,
``contrastive_network.``), so ``port.load_torch_params(wm, state_dict)`` imports an original agent's
world model and names every missing, unexpected or mis-shaped tensor. `WorldModel.from_config` builds
it from ``config.model``, ``config.env.num_actions``, ``config.compute_dtype`` and ``config.quirks``.

Shapes: B batch, T time, S stochastic variables, C classes, D width (``model.hidden``), A actions,
K contrastive steps, F = S*C + D features, images NHWC float ``(..., 64, 64, 3)`` preprocessed.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from twister_jax import distributions, port
from twister_jax.networks import tssm as tssm_lib
from twister_jax.networks import conv as conv_lib
from twister_jax.networks import layers

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
sg = jax.lax.stop_gradient


# ------------------------------------------------------------------------------------------------
# Parts (spec 3.2-3.5, 3.7, 4.3)
# ------------------------------------------------------------------------------------------------

def _ln(features, eps, param_dtype, rngs):
    return layers.layer_norm(features, eps, param_dtype=param_dtype, rngs=rngs)


def _conv_t_kernel(w):
    return conv_lib.torch_conv_transpose_kernel(w)


class Encoder(nnx.Module):
    """4 x (conv 4x4/2 no bias, LN, SiLU), channel-major flatten, Linear -> S*C logits (spec 3.3).

    Torch names: ``cnn.layers.{i}.0.weight``, ``cnn.layers.{i}.1.{weight,bias}``,
    ``representation_network.{weight,bias}``.
    """

    def __init__(self, dim_cnn, stoch, discrete, *, ln_eps, conv_impl, image_size, dtype, param_dtype, rngs):
        self.conv_impl, self.dtype = conv_impl, dtype
        chans = [3] + [dim_cnn * 2 ** i for i in range(4)]
        self.kernels = nnx.List()
        self.norms = nnx.List()
        for i in range(4):
            self.kernels.append(nnx.Param(layers.dreamerv3_normal(rngs.params(), (4, 4, chans[i], chans[i + 1]), param_dtype)))
            self.norms.append(_ln(chans[i + 1], ln_eps, param_dtype, rngs))
        h, w = image_size[0] // 16, image_size[1] // 16
        flat = chans[-1] * h * w
        out = stoch * discrete
        self.repr = nnx.Linear(flat, out, kernel_init=layers.xavier_uniform, bias_init=jax.nn.initializers.zeros,
                               dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def torch_map(self):
        m = {}
        for i in range(4):
            m[f"cnn.layers.{i}.0.weight"] = (("kernels", i), conv_lib.torch_conv_kernel)
            m.update(layers.ln_torch_map(("norms", i), f"cnn.layers.{i}.1"))
        m["representation_network.weight"] = (("repr", "kernel"), port.linear_kernel)
        m["representation_network.bias"] = (("repr", "bias"), port.identity)
        return m

    def __call__(self, x):
        """``(N, H, W, 3)`` preprocessed -> float32 ``(N, S*C)`` logits."""
        h = x.astype(self.dtype)
        for kern, norm in zip(self.kernels, self.norms):
            h = conv_lib.conv2d(h, kern[...].astype(self.dtype), impl=self.conv_impl)
            h = jax.nn.silu(norm(h.astype(jnp.float32))).astype(self.dtype)
        h = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)            # channel-major (C, H, W)
        return self.repr(h).astype(jnp.float32)


class Decoder(nnx.Module):
    """Linear -> (C, 4, 4) -> 3 x (convT 4x4/2 no bias, LN, SiLU) -> convT with bias (spec 3.5).

    Torch names: ``proj.{weight,bias}``, ``cnn.layers.{i}.0.weight`` (i = 0..3), ``cnn.layers.3.0.bias``,
    ``cnn.layers.{i}.1.{weight,bias}`` (i < 3).
    """

    def __init__(self, latent, dim_cnn, *, ln_eps, conv_impl, image_size, dtype, param_dtype, rngs):
        self.conv_impl, self.dtype = conv_impl, dtype
        chans = [dim_cnn * 8, dim_cnn * 4, dim_cnn * 2, dim_cnn, 3]
        self.h0, self.w0 = image_size[0] // 16, image_size[1] // 16
        flat = chans[0] * self.h0 * self.w0
        self.proj = nnx.Linear(latent, flat, kernel_init=layers.xavier_uniform, bias_init=jax.nn.initializers.zeros,
                               dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.kernels = nnx.List()
        self.norms = nnx.List()
        for i in range(4):
            init = layers.dreamerv3_normal if i < 3 else layers.xavier_uniform
            self.kernels.append(nnx.Param(init(rngs.params(), (4, 4, chans[i], chans[i + 1]), param_dtype)))
            if i < 3:
                self.norms.append(_ln(chans[i + 1], ln_eps, param_dtype, rngs))
        self.out_bias = nnx.Param(jnp.zeros((3,), param_dtype))
        self.chans = chans

    def torch_map(self):
        m = {"proj.weight": (("proj", "kernel"), port.linear_kernel), "proj.bias": (("proj", "bias"), port.identity)}
        for i in range(4):
            m[f"cnn.layers.{i}.0.weight"] = (("kernels", i), _conv_t_kernel)
            if i < 3:
                m.update(layers.ln_torch_map(("norms", i), f"cnn.layers.{i}.1"))
        m["cnn.layers.3.0.bias"] = (("out_bias",), port.identity)
        return m

    def __call__(self, z):
        """``(N, S*C)`` -> float32 mean image ``(N, H, W, 3)``."""
        h = self.proj(z.astype(self.dtype))
        h = h.reshape(h.shape[0], self.chans[0], self.h0, self.w0).transpose(0, 2, 3, 1)
        for i in range(4):
            h = conv_lib.conv_transpose2d(h, self.kernels[i][...].astype(self.dtype), impl=self.conv_impl)
            if i < 3:
                h = jax.nn.silu(self.norms[i](h.astype(jnp.float32))).astype(self.dtype)
        return h.astype(jnp.float32) + self.out_bias[...].astype(jnp.float32)


class MLPHead(nnx.Module):
    """``layers`` x (Dense no bias, LN, SiLU) -> Linear (spec 3.2, 3.7).

    Torch names: ``mlp.layers.{i}.0.weight``, ``mlp.layers.{i}.1.{weight,bias}``, ``linear_proj.{weight,bias}``.
    """

    def __init__(self, fin, fout, hidden, num_layers, *, ln_eps, out_init, dtype, param_dtype, rngs):
        self.mlp = layers.MLP(fin, hidden, num_layers, eps=ln_eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        kinit = layers.zeros if out_init == "zeros" else layers.xavier_uniform
        self.linear_proj = layers.Linear(hidden, fout, kernel_init=kinit, bias_init=layers.zeros, dtype=dtype,
                                         param_dtype=param_dtype, rngs=rngs)

    def torch_map(self):
        m = port.nest(self.mlp.torch_map(), "mlp", ("mlp",))
        m.update(port.nest(self.linear_proj.torch_map(), "linear_proj", ("linear_proj",)))
        return m

    def __call__(self, x):
        return self.linear_proj(self.mlp(x)).astype(jnp.float32)


class _ELUMLP(nnx.Module):
    def __init__(self, fin, hidden, num_layers, *, dtype, param_dtype, rngs):
        self.dtype = dtype
        self.layers = nnx.List()
        d = fin
        for _ in range(num_layers):
            init = layers.torch_default_uniform(d)
            self.layers.append(nnx.Linear(d, hidden, kernel_init=init, bias_init=init, dtype=dtype,
                                          param_dtype=param_dtype, rngs=rngs))
            d = hidden

    def torch_map(self):
        m = {}
        for i in range(len(self.layers)):
            m[f"layers.{i}.0.weight"] = (("layers", i, "kernel"), port.linear_kernel)
            m[f"layers.{i}.0.bias"] = (("layers", i, "bias"), port.identity)
        return m

    def __call__(self, x):
        h = x.astype(self.dtype)
        for layer in self.layers:
            h = jax.nn.elu(layer(h))
        return h.astype(jnp.float32)


class ContrastivePair(nnx.Module):
    """Anchor MLP ``mlp_feats`` and target MLP ``mlp_embed``, Linear+ELU each layer (spec 4.3)."""

    def __init__(self, feat, embed, hidden, num_layers, *, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.mlp_feats = _ELUMLP(feat, hidden, num_layers, **kw)
        self.mlp_embed = _ELUMLP(embed, hidden, num_layers, **kw)

    def torch_map(self):
        m = port.nest(self.mlp_feats.torch_map(), "mlp_feats", ("mlp_feats",))
        m.update(port.nest(self.mlp_embed.torch_map(), "mlp_embed", ("mlp_embed",)))
        return m

    def anchor(self, x):
        return self.mlp_feats(x)

    def target(self, x):
        return self.mlp_embed(x)


def info_nce(x, y):
    """``S = X Y^T``; returns ``(-mean(diag - logsumexp_rows S), mean(argmax_rows == diag))`` (spec 4.4)."""
    s = jnp.einsum("id,jd->ij", x.astype(jnp.float32), y.astype(jnp.float32),
                   precision=jax.lax.Precision.HIGHEST)
    n = s.shape[0]
    loss = -jnp.mean(jnp.diagonal(s) - jax.nn.logsumexp(s, axis=1))
    acc = jnp.mean((jnp.argmax(s, axis=1) == jnp.arange(n)).astype(jnp.float32))
    return loss, acc


class WorldModel(nnx.Module):
    """Encoder + TSSM + decoder + reward/continue heads + K contrastive head pairs.

    Args (sizes; config keys in brackets):
      num_actions: A (``env.num_actions``).
      hidden (``model.hidden``), dim_cnn, stoch, discrete, blocks, heads, ff_ratio, context, max_pos,
      dropout, mlp_hidden, mlp_layers, unimix, bins, bins_range, ln_eps, transformer_ln_eps,
      learn_initial, contrastive_steps, contrastive_hidden, contrastive_layers: ``model.*``.
      mode_st_logprob: ``quirks.mode_straight_through_logprob``.
      conv_impl: "auto" (matmul convs on CPU, XLA elsewhere), "xla" or "matmul" (`networks.conv`).
      image_size: (H, W), 64x64 (4 stride-2 convs down to 4x4).
      dtype: compute dtype; param_dtype: parameter dtype (float32).
    """

    def __init__(self, num_actions: int, *, hidden: int = 512, dim_cnn: int = 32, stoch: int = 32,
                 discrete: int = 32, blocks: int = 4, heads: int = 8, ff_ratio: int = 2, context: int = 8,
                 max_pos: int = 2048, dropout: float = 0.1, mlp_hidden: int = 512, mlp_layers: int = 2,
                 unimix: float = 0.01, bins: int = 255, bins_range: float = 20.0, ln_eps: float = 1e-3,
                 transformer_ln_eps: float = 1e-6, learn_initial: bool = True, contrastive_steps: int = 10,
                 contrastive_hidden: int = 512, contrastive_layers: int = 2, mode_st_logprob: bool = True,
                 conv_impl: str = "auto", image_size=(64, 64), dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.num_actions, self.stoch, self.discrete, self.hidden = num_actions, stoch, discrete, hidden
        self.unimix, self.bins, self.bins_range = unimix, bins, bins_range
        self.contrastive_steps, self.dtype = contrastive_steps, dtype
        latent = stoch * discrete
        feat = latent + hidden
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.encoder = Encoder(dim_cnn, stoch, discrete, ln_eps=ln_eps, conv_impl=conv_impl,
                                     image_size=image_size, **kw)
        self.decoder = Decoder(latent, dim_cnn, ln_eps=ln_eps, conv_impl=conv_impl,
                                     image_size=image_size, **kw)
        self.tssm = tssm_lib.TSSM(num_actions, stoch=stoch, discrete=discrete, hidden=hidden, heads=heads,
                                  blocks=blocks, ff_ratio=ff_ratio, context=context, max_pos=max_pos,
                                  dropout=dropout, transformer_ln_eps=transformer_ln_eps, ln_eps=ln_eps,
                                  unimix=unimix, learn_initial=learn_initial, mode_st_logprob=mode_st_logprob,
                                  **kw)
        self.reward_head = MLPHead(feat, bins, mlp_hidden, mlp_layers, ln_eps=ln_eps, out_init="zeros", **kw)
        self.continue_head = MLPHead(feat, 1, mlp_hidden, mlp_layers, ln_eps=ln_eps, out_init="xavier", **kw)
        self.contrastive = nnx.List([
            ContrastivePair(feat + k * num_actions, latent, contrastive_hidden, contrastive_layers, **kw)
            for k in range(contrastive_steps)])

    @classmethod
    def from_config(cls, config, rngs: nnx.Rngs, *, conv_impl: str = "auto", dtype=None) -> "WorldModel":
        """Builds from the full config (INTERFACES section 2); `dtype` overrides ``compute_dtype``."""
        m = config.model
        dt = dtype if dtype is not None else DTYPES[config.compute_dtype]
        return cls(int(config.env.num_actions), hidden=m.hidden, dim_cnn=m.dim_cnn, stoch=m.stoch,
                   discrete=m.discrete, blocks=m.blocks, heads=m.heads, ff_ratio=m.ff_ratio, context=m.context,
                   max_pos=m.max_pos, dropout=m.dropout, mlp_hidden=m.mlp_hidden, mlp_layers=m.mlp_layers,
                   unimix=m.unimix, bins=m.bins, bins_range=m.bins_range, ln_eps=m.ln_eps,
                   transformer_ln_eps=m.transformer_ln_eps, learn_initial=m.learn_initial,
                   contrastive_steps=m.contrastive_steps, contrastive_hidden=m.contrastive_hidden,
                   contrastive_layers=m.contrastive_layers,
                   mode_st_logprob=bool(config.quirks.mode_straight_through_logprob), conv_impl=conv_impl,
                   image_size=tuple(config.env.image_size), dtype=dt, rngs=rngs)

    def torch_map(self) -> port.TorchMap:
        m = port.nest(self.encoder.torch_map(), "encoder_network", ("encoder",))
        m.update(port.nest(self.decoder.torch_map(), "decoder_network", ("decoder",)))
        m.update(port.nest(self.tssm.torch_map(), "rssm", ("tssm",)))
        m.update(port.nest(self.reward_head.torch_map(), "reward_network", ("reward_head",)))
        m.update(port.nest(self.continue_head.torch_map(), "continue_network", ("continue_head",)))
        for k, pair in enumerate(self.contrastive):
            m.update(port.nest(pair.torch_map(), f"contrastive_network.{k}", ("contrastive", k)))
        return m

    # ------------------------------------------------------------------------------ pieces
    def encode(self, x: jax.Array) -> jax.Array:
        """Preprocessed frames ``(..., H, W, 3)`` -> posterior logits float32 ``(..., S, C)`` (spec 3.3)."""
        lead = x.shape[:-3]
        logits = self.encoder(x.reshape((-1,) + x.shape[-3:]))
        return logits.reshape(lead + (self.stoch, self.discrete))

    def decode(self, stoch: jax.Array) -> jax.Array:
        """Latents ``(..., S, C)`` -> mean image float32 ``(..., H, W, 3)`` (spec 3.5)."""
        lead = stoch.shape[:-2]
        flat = stoch.reshape((-1, self.stoch * self.discrete))
        img = self.decoder(flat)
        return img.reshape(lead + img.shape[1:])

    def reward_logits(self, feat: jax.Array) -> jax.Array:
        """``(..., F)`` -> float32 ``(..., bins)``."""
        return self.reward_head(feat)

    def continue_logits(self, feat: jax.Array) -> jax.Array:
        """``(..., F)`` -> float32 ``(..., 1)``."""
        return self.continue_head(feat)

    def reward_log_prob(self, logits: jax.Array, value: jax.Array) -> jax.Array:
        """Two-hot symlog log-probability of raw-unit ``value (...)`` under ``logits (..., bins)``."""
        return distributions.twohot_log_prob(logits, value, self.bins_range)

    def reward_mean(self, logits: jax.Array) -> jax.Array:
        """Mean (= mode) of the two-hot symlog distribution, raw units ``(...)``."""
        return distributions.twohot_mean(logits, self.bins_range)[..., 0]

    def contrastive_losses(self, prior_feat: jax.Array, aug_stoch: jax.Array, actions: jax.Array):
        """AC-CPC losses and accuracies for every step k (spec 4.2-4.4).

        Args:
          prior_feat: ``(B, T, F)`` = ``[prior sample ; h]``.
          aug_stoch: ``(B, T, S, C)`` augmented-frame posterior samples (targets).
          actions: ``(B, T, A)`` actions for the conditioning (``a_{t+1} .. a_{t+k}`` of anchor t).

        Returns:
          ``(losses, accs)``: lists of K float32 scalars (``-mean InfoNCE_k``, argmax accuracy).
        """
        b, t = prior_feat.shape[:2]
        target = aug_stoch.reshape(b, t, -1)
        losses, accs = [], []
        for k, pair in enumerate(self.contrastive):
            n = t - k
            anchor = jnp.concatenate([prior_feat[:, :n]] + [actions[:, j:j + n] for j in range(1, k + 1)], -1)
            xa = pair.anchor(anchor).reshape(b * n, -1)
            ya = pair.target(target[:, k:]).reshape(b * n, -1)
            loss, acc = info_nce(xa, ya)
            losses.append(loss)
            accs.append(acc)
        return losses, accs
