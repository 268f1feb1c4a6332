"""Training defaults chosen by the data: RT-DETR's official recipe, or the faster one for small datasets.

Settings a recipe leaves at None/``auto`` (``train.batch_size``, ``lr``, ``backbone_lr``, ``schedule``,
``schedule_over``, ``anneal_from``, ``warmup_iters``, ``warmup_share``, ``ema_decay``, ``ema_warmups``,
``no_aug_fraction``, ``cls_loss``, ``data.augment``, ``data.multi_scale``, ``data.mosaic``, ``data.mixup``) take the
values of the recipe ``train.recipe_defaults`` names; with ``auto`` that is :data:`FAST_SMALL` for a training set
of at most :data:`SMALL_DATASET_IMAGES` images trained from scratch, :data:`OFFICIAL` otherwise. Within fast_small,
data with fewer than :data:`FEW_OBJECTS_PER_IMAGE` objects per image on average takes
:data:`FAST_SMALL_FEW_OBJECTS`' batch, and a step that would hold fewer than :data:`MIN_MATCHES_PER_STEP` objects
takes :data:`LOW_MATCHES_LR`. The trainer resolves them once the data is indexed and saves the result.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rtdetr.config import DEFAULT_EMA, DEFAULT_WARMUP_ITERS, DEFAULT_WARMUP_SHARE, RunConfig

__all__ = [
    "FAST_SMALL",
    "FAST_SMALL_FEW_OBJECTS",
    "FEW_OBJECTS_PER_IMAGE",
    "LOW_MATCHES_LR",
    "MIN_MATCHES_PER_STEP",
    "OFFICIAL",
    "SMALL_DATASET_IMAGES",
    "resolve_defaults",
]

#: "Small": training sets up to this many images (BCCD has 205, the demo 800; COCO 118k). Measured only on
#: those two from scratch; on a larger set, or fine-tuning, pick ``recipe_defaults: fast_small`` yourself.
SMALL_DATASET_IMAGES = 2000

#: RT-DETR's own recipe for these settings.
OFFICIAL: dict[str, Any] = {
    "train.batch_size": 16,
    "train.lr": 1e-4,
    "train.backbone_lr": 1e-5,  # a tenth: official runs start from an ImageNet-pretrained backbone
    "train.schedule": "constant",
    "train.schedule_over": "epochs",
    "train.anneal_from": "start",
    "train.warmup_iters": DEFAULT_WARMUP_ITERS,
    "train.warmup_share": DEFAULT_WARMUP_SHARE,
    "train.ema_decay": DEFAULT_EMA[0],
    "train.ema_warmups": DEFAULT_EMA[1],
    "train.no_aug_fraction": 0.0,
    "train.cls_loss": "vfl",
    "data.augment": True,
    "data.multi_scale": True,
    "data.mosaic": 0.0,
    "data.mixup": 0.0,
}

#: Faster from scratch on small data (README "Training from scratch" has the A/B and the ablations): the LR
#: follows the run's wall-clock budget (warm-up over at most 30% of the steps it holds, then cosine to the end).
#: Measured and left at their official values because they did not help at these budgets: mosaic, mixup and
#: the matchability-aware loss (MAL), which the data/loss options still offer.
FAST_SMALL: dict[str, Any] = {
    "train.batch_size": 4,  # twice the optimizer steps of batch 8 in the same time: the largest gain measured
    "train.lr": 1e-3,  # BCCD at 15 min: +2.7 AP over 4e-4, each of 3 seeds (README round 5); see LOW_MATCHES_LR
    "train.backbone_lr": 1e-3,  # the backbone learns from scratch too
    "train.schedule": "cosine",
    "train.schedule_over": "time",  # "epochs" when the run has no time budget
    "train.anneal_from": "start",  # "found" (peak LR until the objects are found): no better (rounds 3 and 6)
    "train.warmup_iters": 100,  # every A/B round ran BCCD with these three (README round 12: the official ones
    "train.warmup_share": 0.3,
    "train.ema_decay": 0.999,  # lost 1.4 AP at 15 minutes, each of 3 seeds)
    "train.ema_warmups": 200,
    "train.no_aug_fraction": 0.0,
    "train.cls_loss": "vfl",
    # every A/B round measured fast_small with one scale and no distort/zoom/crop; with both on (the official
    # recipe's), BCCD from scratch had 0.04 AP after 10 minutes against 0.45-0.50 (README round 9)
    "data.augment": False,
    "data.multi_scale": False,
    "data.mosaic": 0.0,
    "data.mixup": 0.0,
}

#: Fewer objects per image than this (the training set's mean) and fast_small's batch 4 gives each step too few
#: one-to-one matches: :data:`FAST_SMALL_FEW_OBJECTS` replaces its batch. Measured on two datasets only (README
#: round 4): BCCD has 13.7 objects per image (batch 4 = 55 matches per step: its best), the demo's shapes 3.4
#: (batch 4 = 14 per step: 0.465 AP at 15 min against 0.675 at batch 16 and 1e-3).
FEW_OBJECTS_PER_IMAGE = 7.0

#: fast_small's batch for data with few objects per image (about as many matches per step as BCCD's batch 4).
FAST_SMALL_FEW_OBJECTS: dict[str, Any] = {"train.batch_size": 16}

#: Matched objects per optimizer step (batch x mean objects per image) below which fast_small's 1e-3 does not
#: learn: the demo at batch 4 (14 per step) never left the first plateau at 1e-3 and reached 0.465 at 4e-4; at 55 per
#: step 1e-3 learned on both datasets (the demo at batch 16: 0.675; BCCD at batch 4: above 4e-4, README round 5).
#: The limit, fast_small's batch 4 x FEW_OBJECTS_PER_IMAGE = 28, lies between the measured 14 and 55; unmeasured in
#: between.
MIN_MATCHES_PER_STEP: float = FAST_SMALL["train.batch_size"] * FEW_OBJECTS_PER_IMAGE

#: fast_small's LR (the backbone's too) for steps with fewer than :data:`MIN_MATCHES_PER_STEP` matches.
LOW_MATCHES_LR = 4e-4

_TABLES = {"official": OFFICIAL, "fast_small": FAST_SMALL}


def _choose(cfg: RunConfig, num_train_images: int) -> tuple[str, str]:
    chosen = cfg.train.recipe_defaults
    if chosen != "auto":
        return chosen, "set by train.recipe_defaults"
    if cfg.init_from:
        return "official", "fine-tuning from a checkpoint"
    if num_train_images > SMALL_DATASET_IMAGES:
        return "official", f"{num_train_images} training images (> {SMALL_DATASET_IMAGES})"
    return "fast_small", f"{num_train_images} training images (<= {SMALL_DATASET_IMAGES}) from scratch"


def resolve_defaults(
    cfg: RunConfig, num_train_images: int, num_train_boxes: int | None = None
) -> tuple[RunConfig, str]:
    """``cfg`` with every None/``auto`` setting of the table set, and a line saying which recipe and why.

    ``num_train_boxes`` (the training set's objects; None: unknown) chooses fast_small's batch and LR: fewer than
    :data:`FEW_OBJECTS_PER_IMAGE` per image on average takes :data:`FAST_SMALL_FEW_OBJECTS`' batch unless
    ``train.batch_size`` is set; then, if the batch (set or chosen) times ``train.accumulate`` times the objects
    per image is below :data:`MIN_MATCHES_PER_STEP`, the LRs not set take :data:`LOW_MATCHES_LR`.
    """
    name, why = _choose(cfg, num_train_images)
    table = dict(_TABLES[name])
    if name == "fast_small" and num_train_boxes is not None and num_train_images > 0:
        per_image = num_train_boxes / num_train_images
        few = per_image < FEW_OBJECTS_PER_IMAGE
        if few:  # a batch the user set still wins, as every setting does where the table is applied below
            table.update(FAST_SMALL_FEW_OBJECTS)
        batch = cfg.train.batch_size or table["train.batch_size"]
        matches = batch * cfg.train.accumulate * per_image  # per optimizer step
        if matches < MIN_MATCHES_PER_STEP:  # 1e-3 at 14 matches per step never learned (README round 4)
            table.update({"train.lr": LOW_MATCHES_LR, "train.backbone_lr": LOW_MATCHES_LR})
        lr = cfg.train.lr or table["train.lr"]
        why += (
            f"; {per_image:.1f} objects per image ({'<' if few else '>='} {FEW_OBJECTS_PER_IMAGE:g}): batch {batch}, "
            f"{matches:.0f} per step ({'<' if matches < MIN_MATCHES_PER_STEP else '>='} {MIN_MATCHES_PER_STEP:g}): "
            f"lr {lr:g}"
        )
    sections: dict[str, dict[str, Any]] = {"train": {"recipe_defaults": name}, "data": {}}
    for dotted, value in table.items():
        section, key = dotted.split(".")
        if key == "backbone_lr" and cfg.train.param_groups:  # the rules give every parameter its lr
            continue
        if getattr(getattr(cfg, section), key) in (None, "auto"):
            if key == "schedule_over" and value == "time" and not cfg.train.time_budget_s:
                value = "epochs"
            sections[section][key] = value
    tail = ""
    off = [k for k in ("augment", "multi_scale") if sections["data"].get(k) is False]
    if off:
        tail = f"; {' and '.join({'augment': 'no distort/zoom/crop', 'multi_scale': 'one scale'}[k] for k in off)}"
        tail += f" ({', '.join(f'data.{k}=true' for k in off)} to change)"
    if cfg.train.no_aug_epochs > cfg.train.epochs:  # a recipe's tail longer than the epochs a flag asked for
        sections["train"]["no_aug_epochs"] = cfg.train.epochs
        tail += (f"; no_aug_epochs {cfg.train.no_aug_epochs} is more than the {cfg.train.epochs} epoch(s): none"
                " trains with strong augmentation")  # fmt: skip
    train = dataclasses.replace(cfg.train, **sections["train"])
    data = dataclasses.replace(cfg.data, **sections["data"])
    return dataclasses.replace(cfg, train=train, data=data), f"training defaults: {name} ({why}){tail}"
