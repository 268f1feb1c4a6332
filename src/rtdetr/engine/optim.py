"""Optimizer parameter groups and the learning-rate schedule (warm-up + constant/cosine/step)."""

from __future__ import annotations

import logging
import math
import re

import torch
from torch import nn

from rtdetr.config import TrainConfig
from rtdetr.models.layers import FrozenBatchNorm2d

__all__ = ["build_optimizer", "describe_groups", "lr_factor", "param_groups", "rule_groups"]

log = logging.getLogger("rtdetr")

_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm, FrozenBatchNorm2d)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: with ``param_groups`` rules, those (:func:`rule_groups`); else backbone vs the rest
    (``backbone_lr`` vs ``lr``), each split into decayed weights and undecayed normalisation parameters and biases
    (unless ``no_decay_norm_bias`` is False). Frozen parameters are left out.

    Raises:
        ValueError: ``lr`` or ``backbone_lr`` is unset (None: :func:`rtdetr.defaults.resolve_defaults` sets them).
    """
    if cfg.lr is None or (cfg.backbone_lr is None and not cfg.param_groups):
        raise ValueError("train.lr and train.backbone_lr are unset: resolve the recipe defaults first")
    if cfg.param_groups:
        return rule_groups(model, cfg)
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bare = name.removeprefix("module.")
        backbone = bare.startswith("backbone.")
        no_decay = cfg.no_decay_norm_bias is not False and (
            id(p) in norm_params or bare.endswith(".bias") or p.ndim <= 1
        )
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


def rule_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The groups of ``cfg.param_groups`` as the official code makes them from its config's ``optimizer.params``:
    the trainable parameters no rule matched (``others``, at ``lr`` and ``weight_decay``; first, so that the LR the
    trainer shows, the first group's, is ``train.lr``), then rule ``i``'s (``rule{i}``; its ``lr`` and
    ``weight_decay``, else ``train``'s). Names are matched without a DDP ``module.`` prefix. A rule matching no
    trainable parameter makes no group: a warning where it matches no name of the model at all (a typo); said at
    debug level where it matches only frozen ones (a frozen BatchNorm's statistics and affine are buffers), as the
    official R50 recipe's backbone-norm rule does.

    Raises:
        ValueError: a parameter matches two rules (the official code asserts).
    """
    rules = cfg.param_groups
    patterns = [re.compile(r.match) for r in rules]
    chosen: list[list[nn.Parameter]] = [[] for _ in rules]
    rest: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bare = name.removeprefix("module.")
        hits = [i for i, pattern in enumerate(patterns) if pattern.search(bare)]
        if len(hits) > 1:
            a, b = hits[:2]
            raise ValueError(
                f"parameter {bare!r} matches train.param_groups[{a}] ({rules[a].match!r}) and [{b}] "
                f"({rules[b].match!r}): a parameter may be in one group only"
            )
        (chosen[hits[0]] if hits else rest).append(p)
    out = [{"params": rest, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "others"}] if rest else []
    for i, (rule, params) in enumerate(zip(rules, chosen)):
        if not params:
            names = (n.removeprefix("module.") for n, _ in [*model.named_parameters(), *model.named_buffers()])
            frozen = any(patterns[i].search(n) for n in names)
            log.log(logging.DEBUG if frozen else logging.WARNING, "train.param_groups[%d] (%r) matches no %s: no "
                    "such group", i, rule.match, "trainable parameter" if frozen else "name in the model")  # fmt: skip
            continue
        lr = cfg.lr if rule.lr is None else rule.lr
        decay = cfg.weight_decay if rule.weight_decay is None else rule.weight_decay
        out.append({"params": params, "lr": lr, "weight_decay": decay, "name": f"rule{i}"})
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` with the multi-tensor (``foreach``) update: one pass over all parameters
    instead of a Python loop of ~10 ops per tensor (the optimizer step of r18vd falls from 72 to ~35 ms on 2 CPU
    cores) and the same numbers as the loop. Not ``fused=True``: on the CPU (torch 2.13) the fused kernel drifts
    from the reference update within 10 steps and then learns visibly worse (tests/engine/test_optim.py)."""
    groups = param_groups(model, cfg)  # (raises while lr is unset)
    return torch.optim.AdamW(
        groups, lr=float(cfg.lr or 0.0), betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, foreach=True
    )


#: The EMA warm-up never takes more than this fraction of a run's optimizer steps.
EMA_WARMUP_FRACTION = 0.2  # (the LR warm-up's cap is train.warmup_share)
#: Fewer optimizer steps than this rarely train a detector from scratch: the trainer warns.
SHORT_RUN_STEPS = 300


def effective_warmups(cfg: TrainConfig, iters_per_epoch: int, total_steps: int | None = None) -> tuple[int, int]:
    """``(lr warm-up steps, EMA warm-up steps)`` for a run: the configured counts (official: 2000 each, fast_small:
    100 and 200; the official ones while ``cfg`` is unresolved), capped
    at ``warmup_share`` (official 10%) and 20% of the run's optimizer steps (``total_steps``, default epochs x
    iterations) so that a short run on a small dataset leaves warm-up."""
    total = max(1, total_steps if total_steps is not None else cfg.epochs * iters_per_epoch)
    lr = min(cfg.warmup_steps, max(1, math.ceil(cfg.warmup_cap * total))) if cfg.warmup_steps > 0 else 0
    ema = min(cfg.ema_ramp[1], max(1, math.ceil(EMA_WARMUP_FRACTION * total)))
    return lr, ema


def expected_steps(cfg: TrainConfig, global_step: int, used_s: float) -> int | None:
    """With ``schedule_over: time``, from the third step on: the optimizer steps the budget holds at the pace so
    far (``global_step`` steps in ``used_s`` seconds of training), at least those done; else None. The LR warm-up
    is capped at ``warmup_share`` of them (as an epoch-based run caps it at its step count); the EMA warm-up is
    left as configured: capped at 20% of a ~100-step run, its decay reaches 0.99 and the evaluated weights lag
    (BCCD, 10 min: AP 0.344 against 0.392 for the same run's raw weights' recipe; README)."""
    if cfg.schedule_over != "time" or not cfg.time_budget_s or global_step < 3 or used_s <= 0:
        return None
    return max(global_step, int(cfg.time_budget_s * global_step / used_s))


def describe_groups(groups: list[dict]) -> str:
    """``param_groups``' groups in words: ``others 260 tensors lr 1e-4 wd 1e-4, rule0 110 tensors lr 1e-5 ...``
    (the peak LR: ``initial_lr`` where a scheduler has scaled ``lr`` for its warm-up)."""
    return ", ".join(
        f"{g.get('name', i)} {len(g['params'])} tensors lr {g.get('initial_lr', g['lr']):g} wd {g['weight_decay']:g}"
        for i, g in enumerate(groups)
    )


def describe_schedule(
    cfg: TrainConfig, iters_per_epoch: int, optimizer: torch.optim.Optimizer | None = None
) -> tuple[str, str | None]:
    """The run's schedule in words (optimizer steps, the LR and EMA warm-ups as :func:`effective_warmups` caps
    them; with ``param_groups`` rules, ``optimizer``'s groups, where a pattern's typo shows), and a warning when the
    run is too short to train a detector from scratch (else None)."""
    warmup, ema_warmup = effective_warmups(cfg, iters_per_epoch)
    steps = cfg.epochs * iters_per_epoch
    plan = (
        f"{steps} optimizer steps ({cfg.epochs} epochs x {iters_per_epoch}); lr warm-up {warmup} "
        f"step{'s' * (warmup != 1)}, EMA {cfg.ema_ramp[0]:g} warming up over {ema_warmup} (capped at "
        f"{100 * cfg.warmup_cap:.0f}% / {100 * EMA_WARMUP_FRACTION:.0f}% of the run)"
    )
    if cfg.param_groups and optimizer is not None:
        plan += f"; optimizer groups (train.param_groups): {describe_groups(optimizer.param_groups)}"
    short = None
    if steps < SHORT_RUN_STEPS:
        short = (f"only {steps} optimizer steps: too short to train a detector from scratch (a few thousand are "
                 "typical); raise epochs or lower the batch size")  # fmt: skip
    return plan, short


def lr_factor(
    step: int,
    cfg: TrainConfig,
    iters_per_epoch: int,
    time_used: float = 0.0,
    total_steps: int | None = None,
    anneal_from: tuple[int, float] | None = (0, 0.0),
) -> float:
    """Multiplier of every group's base LR at optimizer step ``step`` (0-based); warm-up as
    :func:`effective_warmups` gives it for a run of ``total_steps``. With ``schedule_over: time`` the cosine
    follows ``time_used`` (seconds of training so far) over ``time_budget_s`` instead of the step count.
    ``anneal_from``: the (step, seconds of training) where the cosine's clock starts, which then spans the rest
    of the run; None: not yet (the LR holds its peak; ``train.anneal_from: found``)."""
    warmup = effective_warmups(cfg, iters_per_epoch, total_steps)[0]
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    epoch = step / max(1, iters_per_epoch)
    if cfg.schedule in ("cosine", "flat_cosine"):
        if anneal_from is None:
            progress = 0.0
        elif cfg.schedule_over == "time" and cfg.time_budget_s:
            start = min(anneal_from[1], cfg.time_budget_s)
            progress = min(1.0, max(0.0, time_used - start) / max(1e-9, cfg.time_budget_s - start))
        else:
            start, total = anneal_from[0], cfg.epochs * iters_per_epoch
            progress = min(1.0, max(0, step - start) / max(1, total - start))
        if cfg.schedule == "flat_cosine":
            progress = max(0.0, progress - cfg.flat_share) / (1.0 - cfg.flat_share)
        sched = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    elif cfg.schedule == "step":
        sched = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    else:
        sched = 1.0
    return warm * sched
