"""AC-CPC: augmentation (docs/original.md §4.1), anchors (4.2) and the InfoNCE loss (4.4).

Crops separate drawing from using (docs/interfaces.md §4): `sample_crop_boxes(key, n)` draws integer boxes
``(top, left, height, width)`` with torchvision's `RandomResizedCrop.get_params` semantics; the pure
`random_resized_crop(images, boxes)` applies them (static shapes, jit-friendly).
"""
from __future__ import annotations

import math
from typing import Sequence

import chex
import jax
import jax.numpy as jnp

# ------------------------------------------------------------------------------ augmentation --


def _hw(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = tuple(image_size)[:2]
    return int(h), int(w)


def sample_crop_boxes(key: jax.Array, n: int, *, image_size=(64, 64), scale: Sequence[float] = (0.25, 1.0),
                      ratio: Sequence[float] = (3 / 4, 4 / 3), tries: int = 10) -> jax.Array:
    """Draws `n` independent RandomResizedCrop boxes (torchvision ``get_params``; docs/original.md §4.1).

    Per box, up to `tries` proposals: area ``s ~ U(scale)`` x H W, ``log r ~ U(log ratio)``,
    ``w = round(sqrt(area r))``, ``h = round(sqrt(area / r))`` (round half to even, as Python's
    `round`); the first with ``0 < w <= W`` and ``0 < h <= H`` is taken with ``top ~ U{0..H-h}``,
    ``left ~ U{0..W-w}``. If none fits: torchvision's fallback (whole image when the aspect ratio
    of the image is inside `ratio`, else the largest centred crop with the nearest allowed ratio).
    All proposals are drawn at once (static shapes), so the random stream differs from torch's.

    Returns:
      int32 ``(n, 4)``: ``(top, left, height, width)``.
    """
    H, W = _hw(image_size)
    k_s, k_r, k_i, k_j = jax.random.split(key, 4)
    area = H * W * jax.random.uniform(k_s, (n, tries), jnp.float32, scale[0], scale[1])
    log_r = jax.random.uniform(k_r, (n, tries), jnp.float32, math.log(ratio[0]), math.log(ratio[1]))
    r = jnp.exp(log_r)
    w = jnp.round(jnp.sqrt(area * r)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(area / r)).astype(jnp.int32)
    ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    first = jnp.argmax(ok, axis=1)
    any_ok = jnp.any(ok, axis=1)
    h_sel = jnp.take_along_axis(h, first[:, None], axis=1)[:, 0]
    w_sel = jnp.take_along_axis(w, first[:, None], axis=1)[:, 0]
    # Fallback (torchvision): centred crop.
    in_ratio = W / H
    if in_ratio < min(ratio):
        fw, fh = W, int(round(W / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = H, int(round(H * max(ratio)))
    else:
        fw, fh = W, H
    h_sel = jnp.where(any_ok, h_sel, fh)
    w_sel = jnp.where(any_ok, w_sel, fw)
    top = jax.random.randint(k_i, (n,), 0, H - h_sel + 1)
    left = jax.random.randint(k_j, (n,), 0, W - w_sel + 1)
    top = jnp.where(any_ok, top, (H - fh) // 2)
    left = jnp.where(any_ok, left, (W - fw) // 2)
    return jnp.stack([top, left, h_sel, w_sel], axis=-1).astype(jnp.int32)


def _axis_taps(start, length, out_size: int):
    """Bilinear taps (i0, i1, w1) along one axis for half-pixel sampling clamped to the crop."""
    start = start.astype(jnp.float32)[:, None]
    length_f = length.astype(jnp.float32)[:, None]
    o = jnp.arange(out_size, dtype=jnp.float32)[None, :]
    c = start + (o + 0.5) * length_f / out_size - 0.5
    hi = start + length_f - 1.0
    c = jnp.clip(c, start, hi)
    i0 = jnp.floor(c)
    w1 = c - i0
    i1 = jnp.minimum(i0 + 1.0, hi)
    return i0.astype(jnp.int32), i1.astype(jnp.int32), w1


def random_resized_crop(images: jax.Array, boxes: jax.Array, out_size=None) -> jax.Array:
    """Crops ``images[n, top:top+h, left:left+w]`` and resizes bilinearly (docs/original.md §4.1).

    Output pixel (y, x) samples input ``(top + (y + .5) h / OH - .5, left + (x + .5) w / OW - .5)``
    clamped into the crop (torchvision ``resized_crop``, bilinear, ``align_corners=False``; with
    crops never larger than the output, antialiasing is a no-op).

    Args:
      images: ``(N, H, W, C)`` float (preprocessed frames).
      boxes: int ``(N, 4)`` = (top, left, height, width), e.g. from `sample_crop_boxes`.
      out_size: ``(OH, OW)``; defaults to ``(H, W)``.
    Returns:
      ``(N, OH, OW, C)`` in ``images.dtype``.
    """
    chex.assert_rank(images, 4)
    chex.assert_shape(boxes, (images.shape[0], 4))
    oh, ow = _hw(out_size) if out_size is not None else images.shape[1:3]
    boxes = jnp.asarray(boxes, jnp.int32)
    y0, y1, wy = _axis_taps(boxes[:, 0], boxes[:, 2], oh)
    x0, x1, wx = _axis_taps(boxes[:, 1], boxes[:, 3], ow)
    x = images.astype(jnp.float32)

    def one(im, y0, y1, wy, x0, x1, wx):
        # horizontal pass, then vertical (separable, as torchvision's implementation).
        rows = im[:, x0] * (1.0 - wx)[None, :, None] + im[:, x1] * wx[None, :, None]  # (H, OW, C)
        return rows[y0] * (1.0 - wy)[:, None, None] + rows[y1] * wy[:, None, None]

    out = jax.vmap(one)(x, y0, y1, wy, x0, x1, wx)
    return out.astype(images.dtype)


# ------------------------------------------------------------------------------------ loss --

def step_weights(steps: int, lam: float = 0.75) -> jax.Array:
    """``lam^k / sum_j lam^j`` for k < steps (docs/original.md §4.4), float32 ``(steps,)``."""
    w = jnp.asarray([lam ** k for k in range(steps)], jnp.float32)
    return w / jnp.sum(w)


def anchor_input(prior_feat: jax.Array, actions: jax.Array, k: int) -> jax.Array:
    """``[prior_feat[:, :L-k]; actions[:, 1:L-k+1]; ...; actions[:, k:L]]`` -> ``(B, L-k, F + k A)`` (docs/original.md §4.2)."""
    L = prior_feat.shape[1]
    parts = [prior_feat[:, :L - k]] + [actions[:, j:L - k + j].astype(prior_feat.dtype) for j in range(1, k + 1)]
    return jnp.concatenate(parts, axis=-1)


def info_nce(x: jax.Array, y: jax.Array):
    """InfoNCE with raw dot products (docs/original.md §4.4).

    Args:
      x, y: ``(N, D)`` anchor and target projections (row i of each is a positive pair).
    Returns:
      ``(info_nce (N,), loss scalar, accuracy scalar)``; ``loss = -mean(info_nce)``.
    """
    x = x.astype(jnp.float32)
    y = y.astype(jnp.float32)
    s = x @ y.T
    diag = jnp.diagonal(s)
    nce = diag - jax.nn.logsumexp(s, axis=-1)
    acc = jnp.mean((jnp.argmax(s, axis=-1) == jnp.arange(s.shape[0])).astype(jnp.float32))
    return nce, -jnp.mean(nce), acc


def contrastive_loss(heads, prior_feat: jax.Array, aug_embed: jax.Array, actions: jax.Array,
                     lam: float = 0.75, *, return_details: bool = False):
    """The AC-CPC loss over all steps (docs/original.md §4.2-4.4).

    Args:
      heads: `networks.contrastive.ContrastiveHeads` with K pairs.
      prior_feat: ``(B, L, F)`` = [prior sample; h].
      aug_embed: ``(B, L, S*C)`` flattened posterior samples of the augmented frames.
      actions: ``(B, L, A)`` stored actions (as modified by `observe`, docs/quirks.md §10.17).
      lam: ``loss.contrastive_lambda``.
    Returns:
      ``(weighted_total, per_step)`` with ``per_step = {loss (K,), acc (K,), weight (K,)}``; with
      `return_details` also ``details[k]`` dicts holding the head inputs/outputs and ``info_nce``.
    """
    B, L, _ = prior_feat.shape
    K = len(heads.pairs)
    chex.assert_shape(aug_embed, (B, L, heads.embed_size))
    chex.assert_shape(actions, (B, L, heads.num_actions))
    weights = step_weights(K, lam)
    losses, accs, details = [], [], []
    for k, pair in enumerate(heads.pairs):
        a_in = anchor_input(prior_feat, actions, k)
        t_in = aug_embed[:, k:]
        xa, yt = pair.mlp_feats(a_in), pair.mlp_embed(t_in)
        nce, loss, acc = info_nce(xa.reshape(B * (L - k), -1), yt.reshape(B * (L - k), -1))
        losses.append(loss)
        accs.append(acc)
        if return_details:
            details.append(dict(anchor_input=a_in, target_input=t_in, anchor_out=xa, target_out=yt, info_nce=nce))
    losses, accs = jnp.stack(losses), jnp.stack(accs)
    total = jnp.sum(weights * losses)
    per_step = dict(loss=losses, acc=accs, weight=weights)
    return (total, per_step, details) if return_details else (total, per_step)
