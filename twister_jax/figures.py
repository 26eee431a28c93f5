"""Diagnostic figures (docs/original.md §7.4): reconstructions and an open-loop imagined roll-out. Device code.

`make_figures(wm, policy, dist, batch, key, context=5, rows=4)` (called by `agent.figures`, jitted)
returns uint8 arrays:

* ``reconstruction`` ``(3*R*H, T*W, 3)``: for each of the first R windows, three rows over time:
  ground truth, posterior reconstruction (decoder of a posterior sample), absolute error.
* ``imagination_video`` ``(T, R*H, 2*W, 3)``: per frame, for each window, truth | model: the first
  `context` frames are posterior reconstructions (teacher-forced through the one-step TSSM with a
  fresh cache), the rest is imagined open loop: the policy samples an action from the features of
  the previous imagined state, the TSSM predicts the next deterministic state and a prior sample is
  decoded (the original's "imagined" row: 5 context frames, then 59 imagined steps).
Names containing "video" are written as TensorBoard videos by the loop, the rest as images.

Choices: the figures use the acting path (one-step transitions, dropout off, the episode-mask gating
as configured by `wm.tssm`) rather than the training `observe`; the policy samples (not its mode).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from twister_jax.distributions import onehot_sample
from twister_jax.networks import tssm as tssm_lib


def _to_uint8(x):
    """Preprocessed images (x/255 - 0.5) -> uint8."""
    return jnp.clip(jnp.round((x.astype(jnp.float32) + 0.5) * 255.0), 0, 255).astype(jnp.uint8)


def make_figures(wm, policy, dist, batch, key, *, context: int = 5, rows: int = 4) -> dict:
    image = jnp.asarray(batch["image"])
    r = min(rows, image.shape[0])
    t = image.shape[1]
    context = max(1, min(context, t))
    image = image[:r]
    actions = jnp.asarray(batch["action"])[:r].astype(jnp.float32)
    is_first = jnp.asarray(batch["is_first"])[:r].astype(jnp.float32).at[:, 0].set(1.0)
    k_post, k_prior, k_pol = jax.random.split(key, 3)
    unimix = getattr(wm.tssm, "unimix", 0.01)

    x = image.astype(jnp.float32) / 255.0 - 0.5
    logits = wm.encode(x)                                                     # (R, T, S, C)
    z = onehot_sample(logits, jax.random.gumbel(k_post, logits.shape, jnp.float32), unimix)
    recon = _to_uint8(wm.decode(z))                                           # (R, T, H, W, 3)
    err = jnp.abs(recon.astype(jnp.int16) - image.astype(jnp.int16)).astype(jnp.uint8)
    _, _, h, w, c = image.shape
    grid = jnp.stack([image, recon, err], axis=1)                             # (R, 3, T, H, W, 3)
    grid = grid.transpose(0, 1, 3, 2, 4, 5).reshape(r * 3 * h, t * w, c)

    # teacher-forced context through the one-step transition
    tssm = wm.tssm
    cache = tssm.empty_cache(r)
    prev = jnp.concatenate([jnp.zeros_like(z[:, :1]), z[:, :-1]], axis=1)

    def observe_body(cache, xs):
        z_prev, act, first = xs
        s, a = tssm.reset_inputs(z_prev, act, first)
        out = tssm.step(s, a, cache, first, deterministic=True)
        return out["cache"], out["deter"]

    xs = (prev[:, :context].swapaxes(0, 1), actions[:, :context].swapaxes(0, 1),
          is_first[:, :context].swapaxes(0, 1))
    cache, deters = jax.lax.scan(observe_body, cache, xs)
    frames = [recon[:, :context]]
    steps = t - context
    if steps > 0:
        def imagine_body(carry, keys):
            z_prev, h_prev, cache = carry
            k_a, k_z = keys
            raw = policy(tssm_lib.features(z_prev, h_prev))
            a = dist.sample(raw, dist.draw_noise(k_a, (r,)))
            g = jax.random.gumbel(k_z, z_prev.shape, jnp.float32)
            out = tssm.step(z_prev, a, cache, jnp.zeros((r,)), g, deterministic=True)
            return (out["prior_stoch"], out["deter"], out["cache"]), out["prior_stoch"]

        keys = (jax.random.split(k_pol, steps), jax.random.split(k_prior, steps))
        _, z_imag = jax.lax.scan(imagine_body, (z[:, context - 1], deters[-1], cache), keys)
        frames.append(_to_uint8(wm.decode(z_imag.swapaxes(0, 1))))
    model = jnp.concatenate(frames, axis=1)                                   # (R, T, H, W, 3)
    video = jnp.concatenate([image, model], axis=3)                           # (R, T, H, 2W, 3)
    video = video.transpose(1, 0, 2, 3, 4).reshape(t, r * h, 2 * w, c)
    return {"reconstruction": grid, "imagination_video": video}
