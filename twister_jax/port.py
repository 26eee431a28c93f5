"""Importing parameters of the original PyTorch TWISTER into our nnx modules.

All knowledge of the original's parameter names and layouts lives here; the network modules know
nothing of PyTorch. A *table* (`TorchMap`) maps each original parameter name (relative to the
module, e.g. ``"layers.0.weight"``) to the path of the matching `nnx.Param` inside the module (as in
``nnx.state(module, nnx.Param)``) and a function converting the PyTorch layout to ours (e.g. a
transpose). `torch_map(module)` builds the table of any module of `twister_jax.networks`; composite
modules build theirs from their children's with `nest`. `load_torch_params` then checks a whole
state dict against the table and raises one error naming every missing, unexpected and mis-shaped
tensor.

Layouts that differ from the original (written down as the conventions ask):
* Linear kernels are ``(in, out)`` (torch ``(out, in)``); conv kernels HWIO (torch ``(out, in, kh, kw)``),
  transposed-conv kernels ``(kh, kw, in, out)`` not spatially flipped (torch ``(in, out, kh, kw)``).
* The encoder flattens its last NHWC map in ``(y, x, c)`` order, the original in ``(c, y, x)``: the
  representation Linear's kernel rows are permuted on import. Likewise the decoder's projection
  columns and bias (the original reshapes to ``(c, y, x)``, we to ``(y, x, c)``).
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from twister_jax.networks import attention, contrastive, decoder, encoder, heads, layers, transformer, tssm
from twister_jax.networks import world_model

Converter = Callable[[np.ndarray], np.ndarray]
TorchMap = dict[str, tuple[tuple, Converter]]


# ------------------------------------------------------------------------------------------------
# layout converters (PyTorch -> ours)
# ------------------------------------------------------------------------------------------------

def identity(x: np.ndarray) -> np.ndarray:
    return x


def linear_kernel(w: np.ndarray) -> np.ndarray:
    """torch Linear weight (out, in) -> Flax kernel (in, out)."""
    return np.asarray(w).T


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """torch Conv2d weight ``(Cout, Cin, kh, kw)`` -> HWIO kernel ``(kh, kw, Cin, Cout)`` for `conv.conv2d`."""
    return np.asarray(w).transpose(2, 3, 1, 0)


def conv_transpose_kernel(w: np.ndarray) -> np.ndarray:
    """torch ConvTranspose2d weight ``(Cin, Cout, kh, kw)`` -> ``(kh, kw, Cin, Cout)`` for
    `conv.conv_transpose2d`. No spatial flip: ``k[a, b, i, o] = W[i, o, a, b]``."""
    return np.asarray(w).transpose(2, 3, 0, 1)


# ------------------------------------------------------------------------------------------------
# table building blocks
# ------------------------------------------------------------------------------------------------

def nest(child: TorchMap, torch_prefix: str, path_prefix: tuple) -> TorchMap:
    """Prefixes a child module's map: torch names with `torch_prefix.`, paths with `path_prefix`."""
    tp = f"{torch_prefix}." if torch_prefix else ""
    return {tp + name: (tuple(path_prefix) + tuple(path), conv) for name, (path, conv) in child.items()}


def linear_map(ours: tuple, theirs: str, use_bias: bool = True) -> TorchMap:
    """A torch Linear ``{theirs}.weight`` / ``.bias`` onto the `nnx.Linear` at path `ours`."""
    tp = f"{theirs}." if theirs else ""
    m = {tp + "weight": (tuple(ours) + ("kernel",), linear_kernel)}
    if use_bias:
        m[tp + "bias"] = (tuple(ours) + ("bias",), identity)
    return m


def layer_norm_map(ours: tuple, theirs: str) -> TorchMap:
    """A torch LayerNorm ``{theirs}.weight`` / ``.bias`` onto the nnx LayerNorm scale / bias at `ours`."""
    tp = f"{theirs}." if theirs else ""
    return {tp + "weight": (tuple(ours) + ("scale",), identity),
            tp + "bias": (tuple(ours) + ("bias",), identity)}


# ------------------------------------------------------------------------------------------------
# one table per module class (names relative to the module)
# ------------------------------------------------------------------------------------------------

def _linear(m: layers.Linear) -> TorchMap:
    """``weight``, ``bias``."""
    return linear_map(("linear",), "", m.use_bias)


def _dense_norm_act(m: layers.DenseNormAct) -> TorchMap:
    """``0.weight`` (Linear, no bias), ``1.weight``, ``1.bias`` (LayerNorm)."""
    return {"0.weight": (("dense", "kernel"), linear_kernel), **layer_norm_map(("norm",), "1")}


def _indexed(children, torch_name: str, ours: str) -> TorchMap:
    """The tables of a list of submodules: child i under ``{torch_name}.{i}`` / ``(ours, i)``."""
    out: TorchMap = {}
    for i, child in enumerate(children):
        out.update(nest(torch_map(child), f"{torch_name}.{i}", (ours, i)))
    return out


def _mlp(m: layers.MLP) -> TorchMap:
    """``layers.{i}.0.weight``, ``layers.{i}.1.{weight,bias}``."""
    return _indexed(m.layers, "layers", "layers")


def _mlp_head(m: heads.MLPHead) -> TorchMap:
    """``mlp.layers.{i}.0.weight``, ``mlp.layers.{i}.1.{weight,bias}``, ``linear_proj.{weight,bias}``."""
    return {**nest(torch_map(m.mlp), "mlp", ("mlp",)),
            **nest(torch_map(m.linear_proj), "linear_proj", ("linear_proj",))}


def _attention(m: attention.RelPosSelfAttention) -> TorchMap:
    """``{query,key,value,output,pos}_layer.{weight,bias}``, ``u``, ``v``."""
    out: TorchMap = {}
    for ours in ("query", "key", "value", "output", "pos"):
        out.update(linear_map((ours,), f"{ours}_layer"))
    out["u"] = (("u",), identity)
    out["v"] = (("v",), identity)
    return out


def _transformer_block(m: transformer.TransformerBlock) -> TorchMap:
    """``self_att_module.attention.*``, ``self_att_module.post_norm.*``, ``ff_module.layers.{0,3}.*``,
    ``ff_module.post_norm.*``."""
    out = nest(torch_map(m.attention), "self_att_module.attention", ("attention",))
    out.update(layer_norm_map(("att_norm",), "self_att_module.post_norm"))
    out.update(linear_map(("ff1",), "ff_module.layers.0"))
    out.update(linear_map(("ff2",), "ff_module.layers.3"))
    out.update(layer_norm_map(("ff_norm",), "ff_module.post_norm"))
    return out


def _transformer(m: transformer.Transformer) -> TorchMap:
    """``blocks.{b}.*``."""
    return _indexed(m.blocks, "blocks", "blocks")


def _action_mixer(m: tssm.ActionMixer) -> TorchMap:
    """``layers.{0,1}.0.weight``, ``layers.{0,1}.1.{weight,bias}``."""
    return {**nest(torch_map(m.layer0), "layers.0", ("layer0",)),
            **nest(torch_map(m.layer1), "layers.1", ("layer1",))}


def _tssm(m: tssm.TSSM) -> TorchMap:
    """``weight_init`` (when learned), ``action_mixer.*``, ``transformer.*``, ``dynamics_predictor.{weight,bias}``
    (relative to the original's ``rssm.``)."""
    out = nest(torch_map(m.action_mixer), "action_mixer", ("action_mixer",))
    out.update(nest(torch_map(m.transformer), "transformer", ("transformer",)))
    out.update(linear_map(("dynamics_predictor",), "dynamics_predictor"))
    if m.learn_initial:
        out["weight_init"] = (("weight_init",), identity)
    return out


def _encoder(m: encoder.Encoder) -> TorchMap:
    """``cnn.layers.{i}.0.weight``, ``cnn.layers.{i}.1.{weight,bias}``, ``representation_network.{weight,bias}``."""
    out: TorchMap = {}
    for i in range(4):
        out[f"cnn.layers.{i}.0.weight"] = (("kernels", i), conv_kernel)
        out.update(layer_norm_map(("norms", i), f"cnn.layers.{i}.1"))
    c, s = m.dim_cnn * 8, m.final_size

    def repr_kernel(w):  # (out, c*s*s) in (c, y, x) order -> (s*s*c in (y, x, c) order, out)
        w = np.asarray(w)
        return w.reshape(w.shape[0], c, s, s).transpose(2, 3, 1, 0).reshape(s * s * c, w.shape[0])

    out["representation_network.weight"] = (("repr", "kernel"), repr_kernel)
    out["representation_network.bias"] = (("repr", "bias"), identity)
    return out


def _decoder(m: decoder.Decoder) -> TorchMap:
    """``proj.{weight,bias}``, ``cnn.layers.{i}.0.weight`` (i = 0..3), ``cnn.layers.3.0.bias``,
    ``cnn.layers.{i}.1.{weight,bias}`` (i < 3)."""
    c, s = m.widths[0], m.start

    def proj_kernel(w):  # (c*s*s in (c, y, x) order, in) -> (in, s*s*c in (y, x, c) order)
        w = np.asarray(w)
        return w.reshape(c, s, s, -1).transpose(1, 2, 0, 3).reshape(s * s * c, -1).T

    def proj_bias(b):
        return np.asarray(b).reshape(c, s, s).transpose(1, 2, 0).reshape(-1)

    out: TorchMap = {"proj.weight": (("proj", "kernel"), proj_kernel),
                     "proj.bias": (("proj", "bias"), proj_bias)}
    for i in range(4):
        out[f"cnn.layers.{i}.0.weight"] = (("kernels", i), conv_transpose_kernel)
        if i < 3:
            out.update(layer_norm_map(("norms", i), f"cnn.layers.{i}.1"))
    out["cnn.layers.3.0.bias"] = (("out_bias",), identity)
    return out


def _elu_mlp(m: contrastive.EluMLP) -> TorchMap:
    """``layers.{i}.0.{weight,bias}``."""
    out: TorchMap = {}
    for i in range(len(m.layers)):
        out.update(linear_map(("layers", i), f"layers.{i}.0"))
    return out


def _contrastive_pair(m: contrastive.ContrastivePair) -> TorchMap:
    """``mlp_feats.*``, ``mlp_embed.*``."""
    return {**nest(torch_map(m.mlp_feats), "mlp_feats", ("mlp_feats",)),
            **nest(torch_map(m.mlp_embed), "mlp_embed", ("mlp_embed",))}


def _contrastive_heads(m: contrastive.ContrastiveHeads) -> TorchMap:
    """``{k}.mlp_feats.layers.{i}.0.{weight,bias}``, ``{k}.mlp_embed.layers.{i}.0.{weight,bias}``
    (relative to the original's ``contrastive_network``)."""
    out: TorchMap = {}
    for k, pair in enumerate(m.pairs):
        out.update(nest(torch_map(pair), str(k), ("pairs", k)))
    return out


def _world_model(m: world_model.WorldModel) -> TorchMap:
    """``encoder_network.``, ``decoder_network.``, ``rssm.``, ``reward_network.``, ``continue_network.``,
    ``contrastive_network.``: an original agent's world model."""
    out: TorchMap = {}
    for ours, theirs in [("encoder", "encoder_network"), ("decoder", "decoder_network"), ("tssm", "rssm"),
                         ("reward_head", "reward_network"), ("continue_head", "continue_network"),
                         ("contrastive", "contrastive_network")]:
        out.update(nest(torch_map(getattr(m, ours)), theirs, (ours,)))
    return out


_TABLES: dict[type, Callable[..., TorchMap]] = {
    layers.Linear: _linear, layers.DenseNormAct: _dense_norm_act, layers.MLP: _mlp, heads.MLPHead: _mlp_head,
    attention.RelPosSelfAttention: _attention, transformer.TransformerBlock: _transformer_block,
    transformer.Transformer: _transformer, tssm.ActionMixer: _action_mixer, tssm.TSSM: _tssm,
    encoder.Encoder: _encoder, decoder.Decoder: _decoder, contrastive.EluMLP: _elu_mlp,
    contrastive.ContrastivePair: _contrastive_pair, contrastive.ContrastiveHeads: _contrastive_heads,
    world_model.WorldModel: _world_model,
}


def torch_map(module) -> TorchMap:
    """The table of `module` (any module of `twister_jax.networks` that holds parameters).

    Returns:
      ``{original name relative to the module: (path of the nnx.Param in the module, converter)}``.
    Raises:
      TypeError for a module class without a table.
    """
    table = _TABLES.get(type(module))
    if table is None:
        raise TypeError(f"no PyTorch parameter table for {type(module).__name__}")
    return table(module)


# ------------------------------------------------------------------------------------------------
# import
# ------------------------------------------------------------------------------------------------

class ParameterImportError(ValueError):
    """Raised when an original state dict does not match the module."""


def get_path(tree, path):
    """``tree[path[0]][path[1]]...`` (a leaf of a pure dict at a table's path)."""
    node = tree
    for key in path:
        node = node[key]
    return node


def load_torch_params(module, state_dict: Mapping[str, np.ndarray], prefix: str = "",
                      allow_unexpected: bool = False, *, table: TorchMap | None = None) -> None:
    """Copies original parameters into `module` in place.

    Args:
      module: an nnx module with a table (`torch_map`), or any module when `table` is given.
      state_dict: original parameter name -> array (PyTorch layout), e.g. the `params/*` of a
        golden fixture or an original checkpoint's `state_dict()` converted to NumPy.
      prefix: prefix of this module's names in `state_dict` (e.g. ``"encoder_network"``); names
        outside the prefix are ignored.
      allow_unexpected: when False, a name under `prefix` that the module does not use is an error.
      table: the module's table (default: ``torch_map(module)``).

    Raises:
      ParameterImportError naming every missing, unexpected or mis-shaped tensor.
    """
    from flax import nnx
    import jax.numpy as jnp

    mapping = nest(torch_map(module) if table is None else table, prefix, ())
    pre = f"{prefix}." if prefix else ""
    present = {k: v for k, v in state_dict.items() if k.startswith(pre) or not prefix}
    missing = sorted(set(mapping) - set(present))
    unexpected = sorted(set(present) - set(mapping)) if not allow_unexpected else []
    state = nnx.state(module, nnx.Param)
    pure = nnx.to_pure_dict(state)
    bad_shapes = []
    for name, (path, conv) in mapping.items():
        if name not in present:
            continue
        target = get_path(pure, path)
        try:
            value = np.asarray(conv(np.asarray(present[name])))
        except (ValueError, IndexError) as err:  # a converter that reshapes rejects a wrong shape
            bad_shapes.append(f"{name}: got {tuple(np.shape(present[name]))}, expected a tensor that "
                              f"converts to {tuple(target.shape)} ({err})")
            continue
        if tuple(value.shape) != tuple(target.shape):
            bad_shapes.append(f"{name}: got {tuple(np.shape(present[name]))} -> {value.shape}, "
                              f"expected {tuple(target.shape)} at {'/'.join(map(str, path))}")
            continue
        parent = get_path(pure, path[:-1])
        parent[path[-1]] = jnp.asarray(value, dtype=target.dtype)
    problems = []
    if missing:
        problems.append(f"missing tensors: {missing}")
    if unexpected:
        problems.append(f"unexpected tensors: {unexpected}")
    if bad_shapes:
        problems.append(f"mis-shaped tensors: {bad_shapes}")
    if problems:
        raise ParameterImportError(f"cannot import parameters into {type(module).__name__}: " + "; ".join(problems))
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(module, state)
