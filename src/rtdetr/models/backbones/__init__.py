"""Backbones. Each returns ``list[Tensor]`` for its ``return_idx`` stages and exposes ``out_channels`` and
``out_strides``; :func:`build_backbone` is the only place that maps a config name to a class."""

from __future__ import annotations

from torch import nn

from rtdetr.config import BackboneConfig
from rtdetr.models.backbones.hgnetv2 import HGNetv2
from rtdetr.models.backbones.presnet import PResNet

__all__ = ["HGNetv2", "PResNet", "build_backbone"]


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """Construct the backbone described by ``cfg``."""
    if cfg.name == "presnet":
        return PResNet(
            depth=cfg.depth,
            variant=cfg.variant,
            return_idx=cfg.return_idx,
            freeze_at=cfg.freeze_at,
            freeze_norm=cfg.freeze_norm,
        )
    if cfg.name == "hgnetv2":
        return HGNetv2(
            arch=cfg.arch,
            return_idx=cfg.return_idx,
            use_lab=cfg.use_lab,
            freeze_at=cfg.freeze_at,
            freeze_norm=cfg.freeze_norm,
        )
    raise ValueError(f"unknown backbone {cfg.name!r}")
