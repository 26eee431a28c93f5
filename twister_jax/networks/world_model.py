"""The composite world model (docs/original.md §3, §4): encoder, TSSM, decoder, reward/continue heads, AC-CPC heads.

``port.load_torch_params(wm, state_dict)`` imports an original agent's world model (its
``encoder_network.``, ``decoder_network.``, ``rssm.``, ``reward_network.``, ``continue_network.``,
``contrastive_network.`` parameters) and names every missing, unexpected or mis-shaped tensor. `WorldModel.from_config` builds
it from ``config.model``, ``config.env.num_actions``, ``config.compute_dtype`` and ``config.quirks``.

Shapes: B batch, T time, S stochastic variables, C classes, D width (``model.hidden``), A actions,
K contrastive steps, F = S*C + D features, images NHWC float ``(..., 64, 64, 3)`` preprocessed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from twister_jax import distributions
from twister_jax.losses import ac_cpc
from twister_jax.networks import contrastive as contrastive_lib
from twister_jax.networks import heads as heads_lib
from twister_jax.networks import tssm as tssm_lib
from twister_jax.networks.decoder import Decoder
from twister_jax.networks.encoder import Encoder

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
sg = jax.lax.stop_gradient


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
        if image_size[0] != image_size[1]:
            raise ValueError(f"square images only, got {image_size}")
        self.encoder = Encoder(dim_cnn=dim_cnn, stoch=stoch, discrete=discrete, ln_eps=ln_eps, conv_impl=conv_impl,
                               image_size=image_size[0], **kw)
        self.decoder = Decoder(latent, dim_cnn=dim_cnn, ln_eps=ln_eps, conv_impl=conv_impl,
                               image_size=image_size[0], **kw)
        self.tssm = tssm_lib.TSSM(num_actions, stoch=stoch, discrete=discrete, hidden=hidden, heads=heads,
                                  blocks=blocks, ff_ratio=ff_ratio, context=context, max_pos=max_pos,
                                  dropout=dropout, transformer_ln_eps=transformer_ln_eps, ln_eps=ln_eps,
                                  unimix=unimix, learn_initial=learn_initial, mode_st_logprob=mode_st_logprob,
                                  **kw)
        head_kw = dict(hidden=mlp_hidden, num_layers=mlp_layers, ln_eps=ln_eps, **kw)
        self.reward_head = heads_lib.MLPHead(feat, bins, zero_output=True, **head_kw)
        self.continue_head = heads_lib.MLPHead(feat, 1, **head_kw)
        self.contrastive = contrastive_lib.ContrastiveHeads(feat, latent, num_actions, steps=contrastive_steps,
                                                            hidden=contrastive_hidden, num_layers=contrastive_layers,
                                                            **kw)

    @classmethod
    def from_config(cls, config, rngs: nnx.Rngs, *, conv_impl: str = "auto", dtype=None) -> "WorldModel":
        """Builds from the full config (docs/interfaces.md §2); `dtype` overrides ``compute_dtype``."""
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

    # ------------------------------------------------------------------------------ pieces
    def encode(self, x: jax.Array) -> jax.Array:
        """Frames ``(..., H, W, 3)`` (uint8, or preprocessed float) -> posterior logits float32 ``(..., S, C)``."""
        return self.encoder(x)

    def decode(self, stoch: jax.Array) -> jax.Array:
        """Latents ``(..., S, C)`` -> mean image float32 ``(..., H, W, 3)`` (docs/original.md §3.5, preprocessed scale)."""
        return self.decoder(stoch.reshape(stoch.shape[:-2] + (self.stoch * self.discrete,)))

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
        """AC-CPC losses and accuracies for every step k (docs/original.md §4.2-4.4, `losses.ac_cpc.contrastive_loss`).

        Args:
          prior_feat: ``(B, T, F)`` = ``[prior sample ; h]``.
          aug_stoch: ``(B, T, S, C)`` augmented-frame posterior samples (targets).
          actions: ``(B, T, A)`` actions for the conditioning (``a_{t+1} .. a_{t+k}`` of anchor t).

        Returns:
          ``(losses, accs)``: float32 ``(K,)`` each (``-mean InfoNCE_k``, argmax accuracy).
        """
        b, t = prior_feat.shape[:2]
        _, per_step = ac_cpc.contrastive_loss(self.contrastive, prior_feat, aug_stoch.reshape(b, t, -1), actions)
        return per_step["loss"], per_step["acc"]
