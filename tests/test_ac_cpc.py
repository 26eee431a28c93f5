"""Tests of the AC-CPC crop sampler / resize and the InfoNCE helpers (docs/original.md §4.1, §4.4)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twister_jax.losses import ac_cpc


def test_crop_box_distribution():
    n = 4000
    boxes = np.asarray(ac_cpc.sample_crop_boxes(jax.random.key(0), n, image_size=(64, 64)))
    assert boxes.shape == (n, 4) and boxes.dtype == np.int32
    top, left, h, w = boxes.T
    assert (h >= 1).all() and (w >= 1).all() and (h <= 64).all() and (w <= 64).all()
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 64).all() and (left + w <= 64).all()
    area = h * w / 4096.0
    # rounding of w and h widens the ranges slightly
    assert area.min() >= 0.25 * 0.9 and area.max() <= 1.0
    r = w / h
    assert r.min() >= 0.75 * 0.93 and r.max() <= 4 / 3 / 0.93
    # mean area of accepted proposals: U(0.25, 1) truncated by the in-bounds condition (< 0.625)
    assert 0.45 < area.mean() < 0.625
    # tops spread uniformly over the free range
    free = 64 - h
    frac = top[free > 10] / free[free > 10]
    assert 0.4 < frac.mean() < 0.6


def test_crop_fallback_whole_image():
    # impossible scale range -> every try fails -> whole image
    boxes = np.asarray(ac_cpc.sample_crop_boxes(jax.random.key(1), 50, image_size=64, scale=(2.0, 3.0)))
    np.testing.assert_array_equal(boxes, np.tile([0, 0, 64, 64], (50, 1)))


def test_crop_fallback_non_square():
    boxes = np.asarray(ac_cpc.sample_crop_boxes(jax.random.key(1), 3, image_size=(32, 64), scale=(2.0, 3.0)))
    np.testing.assert_array_equal(boxes, np.tile([0, 10, 32, 43], (3, 1)))  # ratio 4/3 centred crop


def test_resized_crop_identity_and_constant_upsample():
    x = jax.random.uniform(jax.random.key(2), (2, 16, 16, 3)) - 0.5
    full = jnp.asarray([[0, 0, 16, 16]] * 2)
    np.testing.assert_allclose(ac_cpc.random_resized_crop(x, full), x, atol=1e-7)
    one = jnp.asarray([[3, 5, 1, 1], [0, 0, 2, 2]])
    out = np.asarray(ac_cpc.random_resized_crop(x, one))
    np.testing.assert_allclose(out[0], np.broadcast_to(np.asarray(x)[0, 3, 5], out[0].shape), atol=1e-7)
    # crop of a 2x2 block only mixes those four pixels (clamped to the crop)
    assert out[1].min() >= np.asarray(x)[1, :2, :2].min() - 1e-7
    assert out[1].max() <= np.asarray(x)[1, :2, :2].max() + 1e-7
    jitted = jax.jit(ac_cpc.random_resized_crop)(x, one)
    np.testing.assert_allclose(jitted, out, atol=1e-7)


def test_step_weights_and_info_nce():
    w = np.asarray(ac_cpc.step_weights(10, 0.75))
    np.testing.assert_allclose(w[:3], [0.2649, 0.1987, 0.1490], atol=1e-4)
    assert w.sum() == pytest.approx(1.0)
    x = jnp.eye(4) * 10
    nce, loss, acc = ac_cpc.info_nce(x, x)
    assert float(acc) == 1.0 and float(loss) < 1e-3
    nce, loss, acc = ac_cpc.info_nce(jnp.zeros((5, 3)), jnp.ones((5, 3)))
    assert float(loss) == pytest.approx(math.log(5), rel=1e-6)


def test_anchor_input_layout():
    B, L, F, A = 2, 6, 3, 2
    feat = jnp.arange(B * L * F, dtype=jnp.float32).reshape(B, L, F)
    act = jnp.arange(B * L * A, dtype=jnp.float32).reshape(B, L, A) + 1000
    u = ac_cpc.anchor_input(feat, act, 2)
    assert u.shape == (B, L - 2, F + 2 * A)
    np.testing.assert_array_equal(u[:, :, :F], feat[:, :L - 2])
    np.testing.assert_array_equal(u[:, :, F:F + A], act[:, 1:L - 1])
    np.testing.assert_array_equal(u[:, :, F + A:], act[:, 2:L])
