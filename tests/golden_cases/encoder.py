"""Golden check: conv encoder -> posterior logits, unimix probs, mode and sample (docs/original.md §3.3, §3.4)."""
import numpy as np
from flax import nnx

from fixture_builders import cnn_flat_to_torch
from twister_jax import distributions as D
from twister_jax import port
from twister_jax.networks import encoder as enc_lib


def _nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)


def check(fx):
    (name, mod), = fx.meta["modules"].items()
    a = mod["constructor_args"]
    prefix = mod.get("param_prefix", name).rstrip(".")
    eps = a["cnn_norm"]["params"]["eps"]
    imgs = fx.inputs["images_uint8"]  # (B, T, 3, H, W)
    enc = enc_lib.Encoder(dim_cnn=a["dim_cnn"], stoch=a["stoch_size"], discrete=a["discrete"], ln_eps=eps,
                          image_size=imgs.shape[-1], in_channels=a["dim_input_cnn"], rngs=nnx.Rngs(0))
    port.load_torch_params(enc, fx.params, prefix)
    x = imgs.transpose(0, 1, 3, 4, 2)
    fx.assert_close("images_float", np.asarray(enc_lib.preprocess(x)).transpose(0, 1, 4, 2, 3))
    logits, inter = enc(x, return_intermediates=True)
    for i in range(4):
        fx.assert_close(f"cnn_layer{i}", _nchw(inter[f"cnn_layer{i}"]))
    fx.assert_close("cnn_flat", cnn_flat_to_torch(inter["cnn_flat"], enc.dim_cnn * 8, enc.final_size))
    fx.assert_close("logits", logits)
    u = fx.config.get("unimix", 0.01)
    fx.assert_close("probs_unimix", D.unimix_probs(logits, u))
    fx.assert_close("log_probs_unimix", D.unimix_log_probs(logits, u))
    fx.assert_close("mode", D.onehot_mode(logits, u))
    fx.assert_close("stoch_sample", D.onehot_sample(logits, fx.inputs["gumbel"], u))
