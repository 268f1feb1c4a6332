"""Where the learning rate's cosine starts: at the start of the run, or once the run has found its objects.

A detector trained from scratch first sits on a plateau: its queries predict roughly the mean box and the loss
barely moves until the encoder learns where objects are, then every term drops. A cosine fitted to a short
budget can anneal the LR while the run is still on that plateau, and such a run ends near zero AP (the demo,
5 minutes: README "Training from scratch"). With ``train.anneal_from: found``, :class:`AnnealStart` holds the LR
at its peak until the final decoder layer's matched boxes overlap their objects with a mean GIoU of at least
``train.found_giou`` over a window of ``train.log_interval`` steps, and the cosine then spans the rest of the
run; a run that never gets there keeps the peak LR, as RT-DETR's constant schedule does. Whatever the schedule,
every run from scratch is watched the same way, and one that ends before its boxes got there is told so: it was
still on its first plateau, which is why its AP is near zero.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from rtdetr.config import TrainConfig
from rtdetr.engine.distributed import rank0_decides

__all__ = ["AnnealStart"]

log = logging.getLogger("rtdetr")


class AnnealStart:
    """When the run found its objects, and the (optimizer step, seconds of training) at which the LR cosine starts.

    Args:
        cfg: the run's settings (``schedule``, ``anneal_from``, ``found_giou``, ``log_interval``).
        giou_weight: the criterion's weight of ``loss_giou`` (its logged value is ``weight * mean(1 - GIoU)``
            over the matched boxes); 0 or missing: the matched GIoU is not known and the cosine starts at once.
    """

    def __init__(self, cfg: TrainConfig, giou_weight: float) -> None:
        cosine = cfg.schedule in ("cosine", "flat_cosine")  # (other schedules have no clock to start)
        self.hold = cosine and cfg.anneal_from == "found" and giou_weight > 0
        self.found: tuple[int, float] | None = None
        self.threshold = cfg.found_giou
        self.interval = max(1, cfg.log_interval)
        self.giou_weight = giou_weight
        self.last_giou: float | None = None
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._checked_step = -1

    @property
    def start(self) -> tuple[int, float] | None:
        """Where the cosine starts: at the found point when held for it (None until then), else at 0."""
        return self.found if self.hold else (0, 0.0)

    @property
    def waiting(self) -> bool:
        """The LR cosine has not started yet."""
        return self.start is None

    @property
    def watching(self) -> bool:
        return self.found is None and self.giou_weight > 0

    def observe(self, losses: dict[str, torch.Tensor]) -> None:
        """Add one training step's ``loss_giou`` (final layer, a device tensor; no read-back) to the window."""
        if self.watching and "loss_giou" in losses:
            value = losses["loss_giou"].detach()
            self._sum = value if self._sum is None else self._sum + value
            self._count += 1

    def update(self, step: int, time_s: float, device: torch.device) -> bool:
        """At every ``interval``-th optimizer step (once per step, on every process): read the window's mean
        matched GIoU back; if it reached the threshold (process 0 decides for all), the run found its objects here
        and, with ``anneal_from: found``, the cosine starts. Returns whether the cosine started now."""
        if not self.watching or step % self.interval or step == self._checked_step or not self._count:
            return False
        self._checked_step = step
        assert self._sum is not None
        self.last_giou = 1.0 - float(self._sum) / self._count / self.giou_weight
        self._sum, self._count = None, 0
        if not rank0_decides(self.last_giou >= self.threshold, device):
            return False
        self.found = (step, time_s)
        then = "; the LR cosine starts now and spans the rest of the run" if self.hold else ""
        log.info("found the objects at step %d (%.0f s of training): matched boxes' mean GIoU %.3f >= %.2f%s", step,
                 time_s, self.last_giou, self.threshold, then)  # fmt: skip
        return self.hold

    def report_end(self) -> None:
        """Say so if the run ended before it found its objects: still on its first plateau (AP near zero)."""
        if self.watching and self.last_giou is not None:
            peak = "; the LR stayed at its peak" if self.hold else ""
            log.warning(
                "the run ended before its matched boxes reached a mean GIoU of %.2f (last %.3f): still on its first "
                "plateau, where AP stays near zero%s; a longer run (or a fine-tuned start) gets further",
                self.threshold, self.last_giou, peak,
            )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"found": None if self.found is None else list(self.found), "last_giou": self.last_giou}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        found = state.get("found")
        self.found = None if found is None else (int(found[0]), float(found[1]))
        self.last_giou = state.get("last_giou")
