"""Optimizer parameter groups and the learning-rate schedule (warm-up + constant/cosine/step)."""

from __future__ import annotations

import math

import torch
from torch import nn

from rtdetr.config import TrainConfig
from rtdetr.models.layers import FrozenBatchNorm2d

__all__ = ["build_optimizer", "lr_factor", "param_groups"]

_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm, FrozenBatchNorm2d)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: backbone vs the rest (``backbone_lr`` vs ``lr``), each split into decayed weights and
    undecayed normalisation parameters and biases (when ``no_decay_norm_bias``). Frozen parameters are left out."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bare = name.removeprefix("module.")
        backbone = bare.startswith("backbone.")
        no_decay = cfg.no_decay_norm_bias and (id(p) in norm_params or bare.endswith(".bias") or p.ndim <= 1)
        groups.setdefault((backbone, no_decay), []).append(p)
    out = []
    for (backbone, no_decay), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": cfg.backbone_lr if backbone else cfg.lr,
                "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                "name": f"{'backbone' if backbone else 'head'}{'_no_decay' if no_decay else ''}",
            }
        )
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def lr_factor(step: int, cfg: TrainConfig, iters_per_epoch: int) -> float:
    """Multiplier of every group's base LR at optimizer step ``step`` (0-based)."""
    warm = min(1.0, (step + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
    epoch = step / max(1, iters_per_epoch)
    if cfg.schedule == "cosine":
        total = max(1, cfg.epochs * iters_per_epoch)
        progress = min(1.0, step / total)
        sched = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    elif cfg.schedule == "step":
        sched = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    else:
        sched = 1.0
    return warm * sched
