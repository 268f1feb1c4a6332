"""HF transformers ``RTDetrForObjectDetection`` / ``RTDetrV2ForObjectDetection`` -> official key layout.

Handles both the transformers 4.x names (``encoder.encoder``, ``fc1``, ``out_proj``) and the 5.x names
(``encoder.aifi``, ``mlp.fc1``, ``o_proj``); splits/joins q, k, v; resolves the tied heads
(``class_embed``/``bbox_embed`` at top level and under ``model.decoder``). Never imports transformers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from rtdetr.config import ModelConfig
from rtdetr.models.variants import get_model_config

__all__ = ["is_hf_state_dict", "hf_to_official", "model_config_from_hf"]

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _r(pattern: str, repl: str | Callable[[re.Match[str]], str]) -> _Rule:
    fn = repl if callable(repl) else (lambda m, r=repl: m.expand(r))
    return re.compile(pattern), fn


_BRANCH = "abc"
_ATTN_LAYER = {
    "self_attn.o_proj": "self_attn.out_proj",
    "self_attn.out_proj": "self_attn.out_proj",
    "mlp.fc1": "linear1",
    "mlp.fc2": "linear2",
    "fc1": "linear1",
    "fc2": "linear2",
    "self_attn_layer_norm": "norm1",
}
_ENC_NORM = {"final_layer_norm": "norm2"}
_DEC_NORM = {"encoder_attn_layer_norm": "norm2", "final_layer_norm": "norm3"}
_SUB = (
    r"(self_attn\.o_proj|self_attn\.out_proj|mlp\.fc1|mlp\.fc2|fc1|fc2"
    r"|self_attn_layer_norm|final_layer_norm|encoder_attn_layer_norm)"
)

_RULES: list[_Rule] = [
    # backbone
    _r(
        r"^model\.backbone\.model\.embedder\.embedder\.(\d)\.convolution\.(.+)$",
        lambda m: f"backbone.conv1.conv1_{int(m.group(1)) + 1}.conv.{m.group(2)}",
    ),
    _r(
        r"^model\.backbone\.model\.embedder\.embedder\.(\d)\.normalization\.(.+)$",
        lambda m: f"backbone.conv1.conv1_{int(m.group(1)) + 1}.norm.{m.group(2)}",
    ),
    _r(
        r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.convolution\.(.+)$",
        lambda m: f"backbone.res_layers.{m[1]}.blocks.{m[2]}.branch2{_BRANCH[int(m[3])]}.conv.{m[4]}",
    ),
    _r(
        r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.normalization\.(.+)$",
        lambda m: f"backbone.res_layers.{m[1]}.blocks.{m[2]}.branch2{_BRANCH[int(m[3])]}.norm.{m[4]}",
    ),
    _r(
        r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.1\.convolution\.(.+)$",
        r"backbone.res_layers.\1.blocks.\2.short.conv.conv.\3",
    ),
    _r(
        r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.1\.normalization\.(.+)$",
        r"backbone.res_layers.\1.blocks.\2.short.conv.norm.\3",
    ),
    _r(
        r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.(.+)$",
        r"backbone.res_layers.\1.blocks.\2.short.conv.\3",
    ),
    _r(
        r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.(.+)$",
        r"backbone.res_layers.\1.blocks.\2.short.norm.\3",
    ),
    # encoder
    _r(r"^model\.encoder_input_proj\.(\d+)\.0\.(.+)$", r"encoder.input_proj.\1.conv.\2"),
    _r(r"^model\.encoder_input_proj\.(\d+)\.1\.(.+)$", r"encoder.input_proj.\1.norm.\2"),
    _r(
        r"^model\.encoder\.(?:aifi|encoder)\.(\d+)\.layers\.(\d+)\." + _SUB + r"\.(.+)$",
        lambda m: f"encoder.encoder.{m[1]}.layers.{m[2]}.{_ATTN_LAYER.get(m[3]) or _ENC_NORM[m[3]]}.{m[4]}",
    ),
    _r(r"^model\.encoder\.(lateral_convs|fpn_blocks|downsample_convs|pan_blocks)\.(.+)$", r"encoder.\1.\2"),
    # decoder
    _r(r"^model\.decoder_input_proj\.(\d+)\.0\.(.+)$", r"decoder.input_proj.\1.conv.\2"),
    _r(r"^model\.decoder_input_proj\.(\d+)\.1\.(.+)$", r"decoder.input_proj.\1.norm.\2"),
    _r(
        r"^model\.decoder\.layers\.(\d+)\.encoder_attn\.n_points_scale$",
        r"decoder.decoder.layers.\1.cross_attn.num_points_scale",
    ),
    _r(
        r"^model\.decoder\.layers\.(\d+)\.encoder_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)\.(.+)$",
        r"decoder.decoder.layers.\1.cross_attn.\2.\3",
    ),
    _r(
        r"^model\.decoder\.layers\.(\d+)\." + _SUB + r"\.(.+)$",
        lambda m: f"decoder.decoder.layers.{m[1]}.{_ATTN_LAYER.get(m[2]) or _DEC_NORM[m[2]]}.{m[3]}",
    ),
    _r(r"^model\.decoder\.query_pos_head\.(.+)$", r"decoder.query_pos_head.\1"),
    _r(r"^(?:model\.decoder\.)?class_embed\.(\d+)\.(.+)$", r"decoder.dec_score_head.\1.\2"),
    _r(r"^(?:model\.decoder\.)?bbox_embed\.(\d+)\.(.+)$", r"decoder.dec_bbox_head.\1.\2"),
    _r(r"^model\.denoising_class_embed\.(.+)$", r"decoder.denoising_class_embed.\1"),
    _r(r"^model\.(?:enc_output|encoder_output)\.0\.(.+)$", r"decoder.enc_output.proj.\1"),
    _r(r"^model\.(?:enc_output|encoder_output)\.1\.(.+)$", r"decoder.enc_output.norm.\1"),
    _r(r"^model\.(enc_score_head|enc_bbox_head)\.(.+)$", r"decoder.\1.\2"),
    _r(r"^model\.weight_embedding\.(.+)$", r"decoder.tgt_embed.\1"),
]
_QKV = re.compile(r"^(.*self_attn)\.(q|k|v)_proj\.(weight|bias)$")
_IGNORED = re.compile(r"^model\.(anchors|valid_mask)$")


def is_hf_state_dict(state: Mapping[str, Any]) -> bool:
    """True if the keys look like an HF ``RTDetr*ForObjectDetection`` state dict."""
    return any(k.startswith(("model.backbone.", "model.decoder.", "model.encoder.")) for k in state)


def _rename(key: str) -> str | None:
    if _IGNORED.match(key):
        return None
    for pattern, fn in _RULES:
        m = pattern.match(key)
        if m:
            return fn(m)
    raise KeyError(key)


def hf_to_official(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Convert an HF RT-DETR(v2) state dict to the official layout (v2 spellings).

    Raises:
        ValueError: listing every key that no rule maps, or tied heads whose copies disagree.
    """
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    unknown = []
    for key, value in state.items():
        m = _QKV.match(key)
        if m:
            base = _rename(m.group(1) + ".out_proj.weight")
            assert base is not None
            qkv.setdefault((base[: -len(".out_proj.weight")], m.group(3)), {})[m.group(2)] = value
            continue
        try:
            new = _rename(key)
        except KeyError:
            unknown.append(key)
            continue
        if new is None:
            continue
        if new in out and not torch.equal(out[new], value):
            raise ValueError(f"tied HF weights disagree for {key!r} -> {new!r}")
        out[new] = value
    if unknown:
        raise ValueError(f"{len(unknown)} HF keys have no mapping, e.g. {unknown[:5]}")
    for (prefix, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"incomplete q/k/v projections under {prefix!r}: {sorted(parts)}")
        out[f"{prefix}.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out


def model_config_from_hf(hf_config: Mapping[str, Any], name: str | None = None) -> ModelConfig:
    """Map an HF ``config.json`` dict (RTDetrConfig or RTDetrV2Config) to our :class:`ModelConfig`."""
    c = dict(hf_config)
    v2 = c.get("model_type") == "rt_detr_v2" or "decoder_method" in c
    bb = c.get("backbone_config") or {}
    depths = tuple(bb.get("depths", (3, 4, 6, 3)))
    basic = bb.get("layer_type", "bottleneck") == "basic"
    depth = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34 if basic else 50, (3, 4, 23, 3): 101}.get(depths)
    if depth is None:
        raise ValueError(f"unsupported HF backbone depths {depths}")
    expansion = float(c.get("hidden_expansion", 1.0))
    arch = f"r{depth}vd" + ("_m" if depth == 50 and expansion == 0.5 else "")
    name = name or f"{'rtdetrv2' if v2 else 'rtdetr'}_{arch}"
    n_levels = int(c.get("decoder_n_levels", c.get("num_feature_levels", 3)))
    points = c.get("decoder_n_points", 4)
    points = list(points) if isinstance(points, list | tuple) else [int(points)] * n_levels
    num_classes = len(c["id2label"]) if c.get("id2label") else int(c.get("num_labels", 80))
    anchor = c.get("anchor_image_size")
    layers = int(c.get("decoder_layers", 6))
    base = get_model_config(name)
    overrides: dict[str, Any] = {
        "num_classes": num_classes,
        "eval_spatial_size": list(anchor) if anchor else base.eval_spatial_size,
        "backbone": {"freeze_norm": bool(c.get("freeze_backbone_batch_norms", base.backbone.freeze_norm))},
        "encoder": {
            "in_channels": list(c.get("encoder_in_channels", base.encoder.in_channels)),
            "feat_strides": list(c.get("feat_strides", base.encoder.feat_strides)),
            "hidden_dim": int(c.get("encoder_hidden_dim", 256)),
            "use_encoder_idx": list(c.get("encode_proj_layers", [2])),
            "num_encoder_layers": int(c.get("encoder_layers", 1)),
            "nhead": int(c.get("encoder_attention_heads", 8)),
            "dim_feedforward": int(c.get("encoder_ffn_dim", 1024)),
            "dropout": float(c.get("dropout", 0.0)),
            "enc_act": c.get("encoder_activation_function", "gelu"),
            "expansion": expansion,
            "act": c.get("activation_function", "silu"),
            "pe_temperature": int(c.get("positional_encoding_temperature", 10000)),
        },
        "decoder": {
            "feat_channels": list(c.get("decoder_in_channels", base.decoder.feat_channels)),
            "feat_strides": list(c.get("feat_strides", base.decoder.feat_strides)),
            "hidden_dim": int(c.get("d_model", 256)),
            "num_levels": n_levels,
            "num_queries": int(c.get("num_queries", 300)),
            "num_layers": layers,
            "num_points": points,
            "nhead": int(c.get("decoder_attention_heads", 8)),
            "dim_feedforward": int(c.get("decoder_ffn_dim", 1024)),
            "activation": c.get("decoder_activation_function", "relu"),
            "num_denoising": int(c.get("num_denoising", 100)),
            "label_noise_ratio": float(c.get("label_noise_ratio", 0.5)),
            "box_noise_scale": float(c.get("box_noise_scale", 1.0)),
            "learn_query_content": bool(c.get("learn_initial_query", False)),
            "eval_idx": base.decoder.eval_idx if base.decoder.eval_idx < layers else -1,
            "cross_attn_method": c.get("decoder_method", "default"),
            "offset_scale": float(c.get("decoder_offset_scale", 0.5)),
        },
    }
    return get_model_config(name, **overrides)
