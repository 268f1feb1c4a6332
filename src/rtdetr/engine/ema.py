"""Exponential moving average of the model weights (with the official ramp-up of the decay)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """``ema = d * ema + (1 - d) * model`` for every floating state entry (BatchNorm statistics included), with
    ``d = decay * (1 - exp(-updates / warmups))``; integer buffers are copied."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmups: int = 2000) -> None:
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.warmups, self.updates = decay, warmups, 0

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.warmups)) if self.warmups > 0 else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        src = _unwrap(model).state_dict()
        ema, new = [], []
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                ema.append(v)
                new.append(src[k].detach().to(v.dtype))
            else:
                v.copy_(src[k])
        if ema:  # one fused pass (ema += (1 - d) * (new - ema)) instead of two ops per tensor
            torch._foreach_lerp_(ema, new, 1 - d)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state.get("updates", 0))


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
