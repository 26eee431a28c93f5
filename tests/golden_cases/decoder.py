"""Golden check: decoder proj, transposed convs, image mean and MSE log-prob (docs/original.md §3.5)."""
import numpy as np
from flax import nnx

from fixture_builders import cnn_flat_to_torch
from twister_jax import port
from twister_jax.networks import decoder as dec_lib
from twister_jax.networks import encoder as enc_lib


def check(fx):
    (name, mod), = fx.meta["modules"].items()
    a = mod["constructor_args"]
    prefix = mod.get("param_prefix", name).rstrip(".")
    z = fx.inputs["stoch_flat"]
    target = fx.inputs["target_uint8"].transpose(0, 1, 3, 4, 2)
    dec = dec_lib.Decoder(a["feat_size"], dim_cnn=a["dim_cnn"], ln_eps=a["cnn_norm"]["params"]["eps"],
                          image_size=target.shape[-2], out_channels=a["dim_output_cnn"], rngs=nnx.Rngs(0))
    port.load_torch_params(dec, fx.params, prefix)
    mean, inter = dec(z, return_intermediates=True)
    fx.assert_close("proj", cnn_flat_to_torch(inter["proj"], dec.widths[0], dec.start))
    for i in range(4):
        fx.assert_close(f"cnn_layer{i}", np.asarray(inter[f"cnn_layer{i}"]).transpose(0, 3, 1, 2))
    fx.assert_close("mean", np.asarray(mean).transpose(0, 1, 4, 2, 3))
    fx.assert_close("log_prob", dec_lib.mse_log_prob(mean, enc_lib.preprocess(target)))
