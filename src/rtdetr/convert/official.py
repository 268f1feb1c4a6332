"""Official ``rtdetr_pytorch`` / ``rtdetrv2_pytorch`` state dicts: key-spelling adaptation and config inference.

Our parameter names are the official ones, so an official state dict loads as it is into the model of the
matching variant. This module only bridges what legitimately differs between official checkpoints:

* v1 vs v2 spellings: ``encoder.input_proj.{i}.0/1`` vs ``.conv/norm`` and ``decoder.enc_output.0/1`` vs
  ``.proj/norm`` (and the ``encoder_output`` spelling of one HF draft);
* the HGNetv2 stem of official rtdetrv2 files, ``backbone.stem.stem2{a,b}.conv.1.weight``, which is
  ``...conv.weight`` here (and in D-FINE/DEIM files);
* regenerable buffers: ``decoder.anchors``/``valid_mask`` and ``cross_attn.num_points_scale`` (v2 only), and the
  never-saved AIFI ``pos_embed*``;
* ``num_batches_tracked`` (absent in FrozenBN checkpoints).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from rtdetr.config import ModelConfig, merge_overrides
from rtdetr.models.variants import get_model_config

__all__ = ["REGENERABLE", "adapt_state_dict", "infer_model_config", "official_keys_to_ours"]

#: Buffers computed from the config; a checkpoint may omit them or carry them for another input size.
REGENERABLE = re.compile(r"(^decoder\.(anchors|valid_mask)$)|(\.num_points_scale$)|(\.num_batches_tracked$)")
_DROP = re.compile(r"(^encoder\.pos_embed\d+$)")

_SPELLINGS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    # (pattern with named groups, every spelling of the same tensor); a key is renamed to whichever spelling the
    # target model has
    (
        re.compile(r"^encoder\.input_proj\.(?P<i>\d+)\.(0|conv)\.(?P<leaf>.+)$"),
        ("encoder.input_proj.{i}.0.{leaf}", "encoder.input_proj.{i}.conv.{leaf}"),
    ),
    (
        re.compile(r"^encoder\.input_proj\.(?P<i>\d+)\.(1|norm)\.(?P<leaf>.+)$"),
        ("encoder.input_proj.{i}.1.{leaf}", "encoder.input_proj.{i}.norm.{leaf}"),
    ),
    (
        re.compile(r"^decoder\.(enc_output|encoder_output)\.(0|proj)\.(?P<leaf>.+)$"),
        ("decoder.enc_output.0.{leaf}", "decoder.enc_output.proj.{leaf}"),
    ),
    (
        re.compile(r"^decoder\.(enc_output|encoder_output)\.(1|norm)\.(?P<leaf>.+)$"),
        ("decoder.enc_output.1.{leaf}", "decoder.enc_output.norm.{leaf}"),
    ),
    # rtdetrv2 HGNetv2 stems pad 'same' through nn.Sequential(ZeroPad2d, Conv2d); D-FINE/DEIM-style code and
    # ours pad in forward, so the 2x2 stem convolutions are ``conv.weight`` here
    (
        re.compile(r"^backbone\.stem\.(?P<conv>stem2[ab])\.conv\.(1\.)?weight$"),
        ("backbone.stem.{conv}.conv.weight", "backbone.stem.{conv}.conv.1.weight"),
    ),
)


def _respell(key: str, target_keys: set[str]) -> str:
    """Map ``key`` to whichever of its spellings exists among ``target_keys``."""
    if key in target_keys:
        return key
    for pattern, spellings in _SPELLINGS:
        m = pattern.match(key)
        if m:
            return next((c for c in (t.format(**m.groupdict()) for t in spellings) if c in target_keys), key)
    return key


def official_keys_to_ours(keys: Mapping[str, Any], model_keys: set[str]) -> dict[str, Any]:
    """Rename every key of ``keys`` (official spellings, any version) to the spelling in ``model_keys``."""
    return {_respell(k, model_keys): v for k, v in keys.items()}


def adapt_state_dict(state: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename ``state`` keys to the spellings of ``target`` (a model's ``state_dict()``), drop never-used
    entries, and fill or replace regenerable buffers from ``target`` when absent or of another shape."""
    target_keys = set(target)
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        if _DROP.search(k):
            continue
        nk = _respell(k, target_keys)
        if REGENERABLE.search(nk) and (nk not in target_keys or tuple(target[nk].shape) != tuple(v.shape)):
            continue
        out[nk] = v
    for k in target_keys - set(out):
        if REGENERABLE.search(k):
            out[k] = target[k]
    return out


def _count(prefix: str, keys: set[str]) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in keys if (m := pat.match(k))}
    return max(idx) + 1 if idx else 0


def infer_model_config(state: Mapping[str, Tensor], name: str | None = None, **overrides: Any) -> ModelConfig:
    """Infer the :class:`ModelConfig` of an official-layout state dict.

    The variant (backbone depth/arch, encoder width/expansion) and the checkpoint's class count, decoder depth,
    points per level and key version are read from tensor shapes. Training-only settings that leave no trace
    (freeze_at, sampling method, eval_idx, ...) come from the registered variant and can be overridden.

    Raises:
        ValueError: if the state dict does not look like an RT-DETR model.
    """
    keys = set(state)
    v2 = "decoder.enc_output.proj.weight" in keys or "encoder.input_proj.0.conv.weight" in keys
    prefix = "rtdetrv2" if v2 else "rtdetr"
    if name is None:
        if "backbone.res_layers.0.blocks.0.branch2a.conv.weight" in keys:
            blocks = tuple(_count(f"backbone.res_layers.{s}.blocks.", keys) for s in range(4))
            bottleneck = "backbone.res_layers.0.blocks.0.branch2c.conv.weight" in keys
            layouts: dict[tuple[int, ...], int] = {
                (2, 2, 2, 2): 18,
                (3, 4, 6, 3): 50 if bottleneck else 34,
                (3, 4, 23, 3): 101,
            }
            depth = layouts.get(blocks)
            if depth is None:
                raise ValueError(f"unrecognised PResNet stage layout {blocks}")
            hidden = int(state["encoder.fpn_blocks.0.conv1.conv.weight"].shape[0])
            width = int(state["encoder.lateral_convs.0.conv.weight"].shape[0])
            arch = f"r{depth}vd" + ("_m" if depth == 50 and hidden * 2 == width else "")
        elif "backbone.stem.stem1.conv.weight" in keys:
            stem_out = int(state["backbone.stem.stem4.conv.weight"].shape[0])
            arch = {48: "hgnetv2_l", 64: "hgnetv2_x"}.get(stem_out, "")
            if not arch:
                raise ValueError(f"unrecognised HGNetv2 stem width {stem_out}")
        else:
            first = ", ".join(sorted(keys)[:3]) or "none"
            raise ValueError(
                "not an RT-DETR checkpoint: its weights have neither 'backbone.res_layers' nor 'backbone.stem' (the"
                f" official layout) nor HF's 'model.backbone' (first of {len(keys)} keys: {first})"
            )
        name = f"{prefix}_{arch}"

    base = get_model_config(name)
    detected: dict[str, Any] = {
        "decoder": {"version": "v2" if v2 else "v1"},
        "encoder": {"version": "v2" if v2 else "v1"},
    }
    if "decoder.dec_score_head.0.weight" in keys:
        detected["num_classes"] = int(state["decoder.dec_score_head.0.weight"].shape[0])
        n_layers = _count("decoder.dec_score_head.", keys)
        detected["decoder"]["num_layers"] = n_layers
        if base.decoder.eval_idx >= n_layers:
            detected["decoder"]["eval_idx"] = -1
    n_levels = _count("decoder.input_proj.", keys)
    if n_levels:
        detected["decoder"]["num_levels"] = n_levels
        scale_key = "decoder.decoder.layers.0.cross_attn.num_points_scale"
        if scale_key in keys:
            scale = state[scale_key].tolist()
            points, i = [], 0
            while i < len(scale):
                n = round(1.0 / scale[i])
                points.append(n)
                i += n
        else:
            total = int(state["decoder.decoder.layers.0.cross_attn.attention_weights.weight"].shape[0])
            total //= base.decoder.nhead
            points = [total // n_levels] * n_levels
        detected["decoder"]["num_points"] = points
    if "decoder.tgt_embed.weight" in keys:
        detected["decoder"]["learn_query_content"] = True
        detected["decoder"]["num_queries"] = int(state["decoder.tgt_embed.weight"].shape[0])
    if "decoder.anchors" in keys and base.eval_spatial_size is not None:
        n_tokens = int(state["decoder.anchors"].shape[1])
        per_px = sum(1 / s**2 for s in base.decoder.feat_strides)
        side = round((n_tokens / per_px) ** 0.5)
        if sum((side // s) ** 2 for s in base.decoder.feat_strides) == n_tokens:
            detected["eval_spatial_size"] = [side, side]
    merged = merge_overrides(detected, overrides)
    return get_model_config(name, **merged)


def strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Remove a common ``prefix`` (e.g. ``module.`` from DDP) from every key that has it."""
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())
