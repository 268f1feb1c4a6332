"""Fit a training run into a wall-clock budget: time a few real training steps and an inference batch of the
model on this machine (:func:`time_steps`), then work out how many epochs, with their evaluations, fit
(:func:`plan_epochs`). ``rtdetr.demo`` uses the plan to stop a fixed schedule on time."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from rtdetr.config import RunConfig
from rtdetr.models import build_model

__all__ = ["BudgetPlan", "plan_epochs", "time_steps"]


@dataclass(frozen=True)
class BudgetPlan:
    epochs: int
    step_s: float
    """Seconds per training step (forward, loss, backward, optimizer) measured here."""
    eval_s: float
    """Seconds per evaluation pass over the validation set (estimated from one timed batch)."""
    epoch_s: float
    """Seconds per epoch: its training steps and its evaluation, with the overhead."""
    train_epoch_s: float
    """The training part of :attr:`epoch_s` (with the overhead)."""
    expected_s: float
    """Expected seconds of training and evaluation for ``epochs`` epochs."""

    def describe(self) -> str:
        return (
            f"{self.epochs} epochs: {self.step_s:.2f} s per training step, {self.epoch_s:.0f} s per epoch with its "
            f"evaluation; about {self.expected_s / 60:.1f} min of training"
        )


def _targets(batch: int, num_classes: int, device: torch.device, per_image: int = 4) -> list[dict[str, torch.Tensor]]:
    """Seeded random targets (``per_image`` normalised cxcywh boxes with labels per image) for timing steps."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(batch):
        n = per_image
        cxcy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(n, 2, generator=g) * 0.2 + 0.05
        labels = torch.randint(0, num_classes, (n,), generator=g)
        out.append({"labels": labels.to(device), "boxes": torch.cat([cxcy, wh], 1).to(device)})
    return out


def time_steps(cfg: RunConfig, steps: int = 3, warmup: int = 1) -> tuple[float, float]:
    """Median seconds of one training step at ``cfg.train.batch_size`` and of one inference batch of the same
    size, for the configured model and input size on ``cfg.train.device`` (random weights and data: the cost
    does not depend on them; data loading is not included)."""
    from rtdetr.bench.profile import measure_latency
    from rtdetr.engine.distributed import resolve_device
    from rtdetr.engine.hardware import training_amp, training_autocast
    from rtdetr.engine.optim import build_optimizer
    from rtdetr.loss import RTDETRCriterion
    from rtdetr.loss.criterion import to_float32

    device = resolve_device(cfg.train.device)
    t = cfg.train
    if t.batch_size is None:
        raise ValueError("train.batch_size is unset: resolve the recipe defaults first")
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device).train()
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    criterion = RTDETRCriterion(cfg.model.num_classes)
    # the step's cost does not depend on the learning rates: any stand in while the recipe has not set them
    lr, backbone_lr = (1e-4 if v is None else v for v in (t.lr, t.backbone_lr))  # (0 is a valid backbone_lr)
    stand_in = replace(t, lr=lr, backbone_lr=None if t.param_groups else backbone_lr)
    opt = build_optimizer(model, stand_in)
    h, w = cfg.data.image_size
    x = torch.rand(t.batch_size, 3, h, w, device=device)
    if t.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    targets = _targets(t.batch_size, cfg.model.num_classes, device)
    dtype = training_amp(t.amp, t.amp_dtype, device)  # the trainer's choice (None: fp32)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step() -> None:
        with training_autocast(device, dtype):
            out = model(x, targets)
        loss = sum(criterion(to_float32(out), targets).values())  # the criterion in fp32, as the trainer runs it
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train = measure_latency(step, warmup, steps, sync=sync)
    model.eval()
    with torch.inference_mode():
        infer = measure_latency(lambda: model(x), warmup, steps, sync=sync)
    return train.median_ms / 1000, infer.median_ms / 1000


def plan_epochs(
    budget_s: float,
    step_s: float,
    infer_s: float,
    train_images: int,
    val_images: int,
    batch: int,
    max_epochs: int,
    min_epochs: int = 1,
    overhead: float = 1.05,
    eval_overhead_s: float = 0.0,
) -> BudgetPlan:
    """The most epochs (``min_epochs``..``max_epochs``) whose training and per-epoch evaluation fit in
    ``budget_s``, with ``overhead`` for data loading, EMA updates, logging and checkpoints, and
    ``eval_overhead_s`` per evaluation beyond its forward passes (COCO metrics, saving checkpoints)."""
    if budget_s <= 0 or step_s <= 0 or batch < 1:
        raise ValueError("budget, step time and batch must be positive")
    steps = math.ceil(train_images / batch)
    eval_s = math.ceil(val_images / batch) * infer_s + eval_overhead_s
    train_epoch_s = steps * step_s * overhead
    epoch_s = train_epoch_s + eval_s * overhead
    epochs = max(min_epochs, min(max_epochs, int(budget_s // epoch_s)))
    return BudgetPlan(epochs, step_s, eval_s, epoch_s, train_epoch_s, epochs * epoch_s)
