"""The model zoo: one table of how variants differ from the R50 base, and the registry built from it.

    variant          | backbone       | encoder hidden/ffn/expansion | decoder layers | published params / GFLOPs
    -----------------+----------------+------------------------------+----------------+--------------------
    rtdetr_r18vd     | PResNet-18 vd  | 256 / 1024 / 0.5             | 3              | 20M / 60
    rtdetr_r34vd     | PResNet-34 vd  | 256 / 1024 / 0.5             | 4              | 31M / 92
    rtdetr_r50vd_m   | PResNet-50 vd  | 256 / 1024 / 0.5             | 6 (eval at 3)  | 36M / 100
    rtdetr_r50vd     | PResNet-50 vd  | 256 / 1024 / 1.0             | 6              | 42M / 136
    rtdetr_r101vd    | PResNet-101 vd | 384 / 2048 / 1.0             | 6              | 76M / 259
    rtdetr_hgnetv2_l | HGNetv2-L      | 256 / 1024 / 1.0             | 6              | 32M / 110
    rtdetr_hgnetv2_x | HGNetv2-X      | 384 / 2048 / 1.0             | 6              | 67M / 234

``rtdetrv2_*`` variants share the architecture and differ in checkpoint key names/buffers (``version="v2"``);
``*_dsp`` variants use RT-DETRv2 discrete sampling. R18/R34 train all BatchNorms; R50/R101/HGNetv2 freeze the
backbone norms and stem.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rtdetr.config import BackboneConfig, DecoderConfig, EncoderConfig, ModelConfig, from_dict, merge_overrides, to_dict
from rtdetr.models.rtdetr import RTDETR, build_model

__all__ = ["VariantSpec", "create_model", "get_model_config", "get_variant", "list_models", "register_variant"]


@dataclass(frozen=True)
class VariantSpec:
    """A registered variant: its config plus the numbers the official READMEs publish (COCO val2017, 640x640;
    parameters in millions, truncated as published)."""

    name: str
    config: ModelConfig
    params_m: float
    gflops: float
    coco_ap: float | None = None
    description: str = ""


_REGISTRY: dict[str, VariantSpec] = {}


def register_variant(spec: VariantSpec) -> VariantSpec:
    """Add a variant; names are unique."""
    if spec.name in _REGISTRY:
        raise ValueError(f"variant {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models(pattern: str = "*") -> list[str]:
    """Registered variant names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_variant(name: str) -> VariantSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(list_models())}"
        raise ValueError(f"unknown model variant {name!r}{hint}") from None


def get_model_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of variant ``name`` with nested ``overrides`` applied strictly, e.g.
    ``get_model_config("rtdetr_r50vd", num_classes=3, decoder={"num_layers": 3})``."""
    base = to_dict(get_variant(name).config)
    return from_dict(ModelConfig, merge_overrides(base, overrides))


def create_model(name: str, **overrides: Any) -> RTDETR:
    """Build variant ``name`` with random weights. ``overrides`` as in :func:`get_model_config`.

    Example:
        >>> model = create_model("rtdetr_r18vd", num_classes=3)
    """
    return build_model(get_model_config(name, **overrides))


# --------------------------------------------------------------------------------------------------------------
# The table. Base = official R50 configuration; each variant lists only what differs.

_R_SMALL_BACKBONE = {"freeze_at": -1, "freeze_norm": False}
_SMALL_ENC = {"in_channels": (128, 256, 512), "expansion": 0.5}
_WIDE_ENC = {"hidden_dim": 384, "dim_feedforward": 2048}
_WIDE_DEC = {"feat_channels": (384, 384, 384)}

_TABLE: dict[str, tuple[dict, dict, dict, float, float, dict[str, float | None]]] = {
    # name: (backbone, encoder, decoder, params M, GFLOPs, {"v1": AP, "v2": AP})
    "r18vd": ({"depth": 18, **_R_SMALL_BACKBONE}, _SMALL_ENC, {"num_layers": 3}, 20, 60, {"v1": 46.5, "v2": 47.9}),
    "r34vd": ({"depth": 34, **_R_SMALL_BACKBONE}, _SMALL_ENC, {"num_layers": 4}, 31, 92, {"v1": 48.9, "v2": 49.9}),
    "r50vd_m": ({"depth": 50}, {"expansion": 0.5}, {"eval_idx": 2}, 36, 100, {"v1": 51.3, "v2": 51.9}),
    "r50vd": ({"depth": 50}, {}, {}, 42, 136, {"v1": 53.1, "v2": 53.4}),
    "r101vd": ({"depth": 101}, _WIDE_ENC, _WIDE_DEC, 76, 259, {"v1": 54.3, "v2": 54.3}),
    "hgnetv2_l": ({"name": "hgnetv2", "arch": "L"}, {}, {}, 32, 110, {"v1": 53.0, "v2": None}),
    "hgnetv2_x": ({"name": "hgnetv2", "arch": "X"}, _WIDE_ENC, _WIDE_DEC, 67, 234, {"v1": 54.8, "v2": None}),
}
_DSP_AP = {"r18vd": 47.4, "r34vd": 49.2, "r50vd_m": 51.4, "r50vd": 52.9}


def _config(name: str, bb: Mapping, enc: Mapping, dec: Mapping, version: str, discrete: bool = False) -> ModelConfig:
    decoder = {**dec, "version": version}
    if discrete:
        decoder["cross_attn_method"] = "discrete"
    return ModelConfig(
        name=name,
        backbone=dataclasses.replace(BackboneConfig(), **bb),
        encoder=dataclasses.replace(EncoderConfig(), **{**enc, "version": version}),
        decoder=dataclasses.replace(DecoderConfig(), **decoder),
    )


def _register_all() -> None:
    for arch, (bb, enc, dec, params, gflops, ap) in _TABLE.items():
        for version, prefix in (("v1", "rtdetr"), ("v2", "rtdetrv2")):
            name = f"{prefix}_{arch}"
            register_variant(
                VariantSpec(
                    name,
                    _config(name, bb, enc, dec, version),
                    params,
                    gflops,
                    ap[version],
                    f"RT-DETR{'v2' if version == 'v2' else ''} {arch}",
                )
            )
        if arch in _DSP_AP:
            name = f"rtdetrv2_{arch}_dsp"
            register_variant(
                VariantSpec(
                    name,
                    _config(name, bb, enc, dec, "v2", discrete=True),
                    params,
                    gflops,
                    _DSP_AP[arch],
                    f"RT-DETRv2 {arch}, discrete sampling",
                )
            )


_register_all()
