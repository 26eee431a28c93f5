"""World-model loss (docs/original.md §3.8) with AC-CPC (docs/original.md §4) and the imagination start states (docs/original.md §5.1).

`world_model_loss(wm, batch, noise, cfg, *, deterministic, dropout_key) -> (loss_total, aux)` is a
pure function of the module (used functionally: `loss_fn` merges ``graphdef + params`` inside the
traced function), the batch (docs/interfaces.md §3), the noise (drawn by `draw_noise`, or recorded in a
golden fixture) and a dropout key. Order of the forward, as in the original (fixture notes):
encoder on the frames (``gumbel_post``) -> `TSSM.observe` (``gumbel_prior``, dropout) -> decoder,
reward and continue heads on posterior features -> KL terms -> encoder on the augmented frames
(``gumbel_aug_post``) -> 10 contrastive head pairs.

Shapes: B batch, T time (= ``seq_len``), S stochastic variables, C classes, D width, A actions,
K contrastive steps, W cache slots (= ``model.context``), N = B*T start states.

Ambiguous choices (written down as the conventions ask):
* AC-CPC action conditioning reads the actions as the original's `observe` leaves them (clipped, zeroed
  at t = 0 and at every ``is_first``; docs/quirks.md §10.17). Index 0 is never read and replayed actions
  are already zero at resets, so this equals reading the stored actions; ``aux["actions_after_observe"]``
  shows what was read.
* ``done`` of the continue target is ``batch["is_terminal"]`` (docs/original.md §3.7: ``c_t = 1 - done_t``).
* The loss total sums the terms in the fixture's order (contrastive 0..K-1, image, kl_prior, kl_post,
  reward, discount); each term is float32.
* Start-state windows are built from the observe pass of this same forward (dropout noise included,
  docs/quirks.md §10.13), everything stop-gradiented; flags follow ``quirks.imagination_flag_shift``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from twister_jax import distributions as dist
from twister_jax import imagination
from twister_jax.networks import tssm as tssm_lib

sg = jax.lax.stop_gradient

NOISE_NAMES = ("gumbel_post", "gumbel_prior", "gumbel_aug_post")


# ------------------------------------------------------------------------------------ config --

@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss weights and switches (``config.loss.*``, ``config.quirks.imagination_flag_shift``); hashable."""
    image: float = 1.0
    reward: float = 1.0
    cont: float = 1.0
    kl_dyn: float = 0.5
    kl_rep: float = 0.1
    free_nats: float = 1.0
    contrastive: float = 1.0
    contrastive_lambda: float = 0.75
    imagination_flag_shift: bool = True

    @classmethod
    def from_config(cls, config) -> "LossConfig":
        """From the full config (docs/interfaces.md §2)."""
        loss = config.loss
        return cls(image=float(loss.image), reward=float(loss.reward), cont=float(loss.cont),
                   kl_dyn=float(loss.kl_dyn), kl_rep=float(loss.kl_rep), free_nats=float(loss.free_nats),
                   contrastive=float(loss.contrastive), contrastive_lambda=float(loss.contrastive_lambda),
                   imagination_flag_shift=bool(config.quirks.imagination_flag_shift))


def _as_loss_config(cfg) -> LossConfig:
    return cfg if isinstance(cfg, LossConfig) else LossConfig.from_config(cfg)


def contrastive_weights(steps: int, lam: float) -> np.ndarray:
    """``lam^k / sum_j lam^j`` for k = 0..steps-1 (docs/original.md §4.4), float32 ``(K,)``."""
    w = np.asarray([lam ** k for k in range(steps)], np.float64)
    return (w / w.sum()).astype(np.float32)


# ------------------------------------------------------------------------------------- noise --

def draw_noise(key: jax.Array, batch_size: int, seq_len: int, stoch: int, discrete: int, *,
               augment: bool = True, crop_scale=(0.25, 1.0), crop_ratio=(0.75, 4.0 / 3.0),
               image_size=(64, 64)) -> dict:
    """Draws every random input of `world_model_loss` from `key` (docs/interfaces.md §4).

    Args:
      key: one key for this purpose (e.g. ``fold_in(fold_in(base, step), WM_NOISE)``).
      batch_size, seq_len, stoch, discrete: B, T, S, C.
      augment: also draw the random-resized-crop boxes of the AC-CPC targets (docs/original.md §4.1).
      crop_scale, crop_ratio, image_size: ``config.augment.*``, ``config.env.image_size``.

    Returns:
      dict with the fixture's names: ``gumbel_post``, ``gumbel_prior``, ``gumbel_aug_post``
      (float32 ``(B, T, S, C)`` standard Gumbel, in the original's draw order) and, when `augment`,
      ``crop_boxes`` int32 ``(B*T, 4)`` = (top, left, height, width) per frame.
    """
    k_post, k_prior, k_aug, k_crop = jax.random.split(key, 4)
    shape = (batch_size, seq_len, stoch, discrete)
    out = {"gumbel_post": jax.random.gumbel(k_post, shape, jnp.float32),
           "gumbel_prior": jax.random.gumbel(k_prior, shape, jnp.float32),
           "gumbel_aug_post": jax.random.gumbel(k_aug, shape, jnp.float32)}
    if augment:
        from twister_jax.losses import ac_cpc
        out["crop_boxes"] = ac_cpc.sample_crop_boxes(k_crop, batch_size * seq_len, image_size=image_size,
                                                     scale=crop_scale, ratio=crop_ratio)
    return out


# ------------------------------------------------------------------------------ distributions --

def categorical_kl(post_logits, prior_logits, unimix: float, *, stop_post=False, stop_prior=False):
    """``KL(q || p)`` of the unimix categoricals, summed over the S variables (docs/original.md §3.4): ``(...)``.

    `stop_post` gives the dynamics term ``KL(sg(q) || p)``, `stop_prior` the representation term
    ``KL(q || sg(p))`` (docs/original.md §3.8): the stop acts on the logits only.
    """
    q = sg(post_logits) if stop_post else post_logits
    p = sg(prior_logits) if stop_prior else prior_logits
    return dist.onehot_kl(q, p, unimix)


# -------------------------------------------------------------------------------------- loss --

def preprocess(image: jax.Array) -> jax.Array:
    """uint8 frames -> float32 ``x / 255 - 0.5`` (docs/original.md §3.1)."""
    return image.astype(jnp.float32) / 255.0 - 0.5


def world_model_loss(wm, batch: dict, noise: dict, cfg: Any, *, deterministic: bool = False,
                     dropout_key: Optional[jax.Array] = None, return_outputs: bool = False):
    """The world-model loss of one gradient step (docs/original.md §3.8, §4) and the imagination start states (5.1).

    Args:
      wm: a `twister_jax.networks.world_model.WorldModel`.
      batch: docs/interfaces.md §3 dict: ``image`` uint8 ``(B, T, 64, 64, 3)``, ``action`` float32
        ``(B, T, A)``, ``reward`` ``(B, T)``, ``is_first`` ``(B, T)``, ``is_terminal`` ``(B, T)``.
      noise: ``gumbel_post``, ``gumbel_prior``, ``gumbel_aug_post`` ``(B, T, S, C)``, and either
        ``aug_image`` (uint8 ``(B, T, 64, 64, 3)``, pre-augmented frames, e.g. a golden fixture's) or
        ``crop_boxes`` int ``(B*T, 4)`` (see `draw_noise`).
      cfg: `LossConfig` or the full config (``loss.*``, ``quirks.imagination_flag_shift``).
      deterministic: no transformer dropout when True (the original trains with dropout: False).
      dropout_key: key of the transformer dropout (needed when not `deterministic`).
      return_outputs: add the intermediate tensors (``outputs``) to aux, for golden tests / figures.

    Returns:
      ``(loss_total, aux)``: scalar float32 and a dict with
        * ``losses``: ``{name: scalar}`` for ``model_image``, ``kl_prior``, ``kl_post``,
          ``model_reward``, ``model_discount``, ``model_contrastive_{k}`` (k = 0..K-1);
        * ``weights``: the same names -> python floats;
        * ``metrics``: ``acc_con``, ``acc_con_{k}`` (k >= 1), ``kl`` (mean unclipped KL),
          ``post_entropy``, ``prior_entropy`` (mean over (b, t), summed over S);
        * ``start``: `imagination.StartState` of all N = B*T positions (stop-gradiented);
        * ``start_cont``: ``(N,)`` float32 ``1 - is_terminal`` (first continue, docs/original.md §5.1);
        * ``outputs`` (with `return_outputs`): ``post_logits``, ``post_stoch``, ``prior_logits``,
          ``prior_stoch``, ``deter``, ``kv``, ``reward_logits``, ``continue_logits``, ``image_mean``,
          ``kl_unclipped``, ``aug_post_logits``, ``aug_post_stoch``, ``actions_after_observe``.
    """
    cfg = _as_loss_config(cfg)
    image = batch["image"]
    b, t = image.shape[:2]
    is_first = jnp.asarray(batch["is_first"]).astype(jnp.float32)
    action = jnp.asarray(batch["action"], jnp.float32)
    reward = jnp.asarray(batch["reward"], jnp.float32)
    done = jnp.asarray(batch["is_terminal"]).astype(jnp.float32)
    unimix = wm.unimix

    # 1. posterior of the frames (docs/original.md §3.3, §3.4)
    x = preprocess(image)
    post_logits = wm.encode(x)                                                     # (B, T, S, C)
    post_stoch = dist.onehot_sample(post_logits, noise["gumbel_post"], unimix)

    # 2. teacher-forced TSSM (docs/original.md §3.6.7)
    obs = wm.tssm.observe(post_stoch, action, is_first, noise["gumbel_prior"], key=dropout_key,
                          deterministic=deterministic)
    deter, prior_logits, prior_stoch = obs["deter"], obs["prior_logits"], obs["prior_stoch"]

    # 3. decoder and heads on posterior features (docs/original.md §3.5, §3.7)
    image_mean = wm.decode(post_stoch)                                              # (B, T, 64, 64, 3)
    loss_image = jnp.mean(jnp.sum(jnp.square(image_mean.astype(jnp.float32) - x), axis=(-3, -2, -1)))
    feat = tssm_lib.features(post_stoch, deter)
    reward_logits = wm.reward_logits(feat)                                          # (B, T, bins)
    continue_logits = wm.continue_logits(feat)                                      # (B, T, 1)
    loss_reward = -jnp.mean(wm.reward_log_prob(reward_logits, reward))
    loss_discount = -jnp.mean(dist.bernoulli_log_prob(continue_logits, (1.0 - done)[..., None]))

    # 4. KL with free nats (docs/original.md §3.8, docs/quirks.md §10.21): dyn stops the posterior, rep stops the prior
    kl_dyn = categorical_kl(post_logits, prior_logits, unimix, stop_post=True)
    kl_rep = categorical_kl(post_logits, prior_logits, unimix, stop_prior=True)
    loss_kl_prior = jnp.mean(dist.kl_free_nats(kl_dyn, cfg.free_nats))
    loss_kl_post = jnp.mean(dist.kl_free_nats(kl_rep, cfg.free_nats))

    # 5. AC-CPC (docs/original.md §4)
    if "aug_image" in noise:
        x_aug = preprocess(noise["aug_image"])
    else:
        from twister_jax.losses import ac_cpc
        flat = x.reshape((b * t,) + x.shape[2:])
        x_aug = ac_cpc.random_resized_crop(flat, noise["crop_boxes"]).reshape(x.shape)
    aug_logits = wm.encode(x_aug)
    aug_stoch = dist.onehot_sample(aug_logits, noise["gumbel_aug_post"], unimix)
    acts_obs = jnp.where((is_first > 0).at[:, 0].set(True)[..., None], 0.0, tssm_lib.clip_action(action))
    prior_feat = tssm_lib.features(prior_stoch, deter)
    con_losses, con_accs = wm.contrastive_losses(prior_feat, aug_stoch, acts_obs)

    # 6. total, in the fixture's order
    steps = len(con_losses)
    cw = contrastive_weights(steps, cfg.contrastive_lambda) * cfg.contrastive
    losses, weights = {}, {}
    for k in range(steps):
        losses[f"model_contrastive_{k}"] = con_losses[k]
        weights[f"model_contrastive_{k}"] = float(cw[k])
    for name, value, w in [("model_image", loss_image, cfg.image), ("kl_prior", loss_kl_prior, cfg.kl_dyn),
                           ("kl_post", loss_kl_post, cfg.kl_rep), ("model_reward", loss_reward, cfg.reward),
                           ("model_discount", loss_discount, cfg.cont)]:
        losses[name], weights[name] = value, float(w)
    total = jnp.zeros((), jnp.float32)
    for name in losses:
        total = total + jnp.float32(weights[name]) * losses[name].astype(jnp.float32)

    # 7. metrics and imagination starts (docs/original.md §5.1)
    metrics = {"acc_con": con_accs[0], **{f"acc_con_{k}": con_accs[k] for k in range(1, steps)},
               "kl": jnp.mean(sg(kl_rep)),
               "post_entropy": sg(jnp.mean(dist.onehot_entropy(post_logits, unimix, event_dims=2))),
               "prior_entropy": sg(jnp.mean(dist.onehot_entropy(prior_logits, unimix, event_dims=2)))}
    start = imagination.start_states(post_stoch, deter, post_logits, obs["kv"], is_first,
                                     slots=wm.tssm.context, flag_shift=cfg.imagination_flag_shift)
    aux = {"losses": losses, "weights": weights, "metrics": metrics, "start": start,
           "start_cont": sg((1.0 - done).reshape(b * t))}
    if return_outputs:
        aux["outputs"] = {"post_logits": post_logits, "post_stoch": post_stoch, "prior_logits": prior_logits,
                          "prior_stoch": prior_stoch, "deter": deter, "kv": obs["kv"],
                          "reward_logits": reward_logits, "continue_logits": continue_logits,
                          "image_mean": image_mean, "kl_unclipped": kl_rep, "aug_post_logits": aug_logits,
                          "aug_post_stoch": aug_stoch, "actions_after_observe": acts_obs}
    return total, aux


def loss_fn(params, graphdef, rest, batch: dict, noise: dict, cfg: Any, *, deterministic: bool = False,
            dropout_key: Optional[jax.Array] = None):
    """`world_model_loss` on a split module: ``graphdef, params, rest = nnx.split(wm, nnx.Param, ...)``.

    Differentiate with ``jax.value_and_grad(loss_fn, has_aux=True)(params, graphdef, rest, ...)``;
    close over ``cfg`` and ``deterministic`` (static) when jitting.
    """
    from flax import nnx
    wm = nnx.merge(graphdef, params, rest)
    return world_model_loss(wm, batch, noise, cfg, deterministic=deterministic, dropout_key=dropout_key)
