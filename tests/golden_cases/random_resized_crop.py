"""Golden check: the deterministic crop-and-resize of the AC-CPC augmentation (docs/original.md §4.1)."""
import numpy as np

from twister_jax.losses import ac_cpc
from twister_jax.networks import encoder


def check(fx):
    imgs = encoder.preprocess(fx.inputs["images_uint8"].transpose(0, 2, 3, 1))  # NCHW uint8 -> NHWC float
    size = tuple(fx.config.get("size", imgs.shape[1:3]))
    out = ac_cpc.random_resized_crop(imgs, fx.inputs["boxes"].astype(np.int32), out_size=size)
    fx.assert_close("crops", np.asarray(out).transpose(0, 3, 1, 2))
