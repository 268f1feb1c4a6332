"""Parameter count, FLOPs and wall-clock latency.

GFLOPs follow the convention of the published RT-DETR table: ``torch.utils.flop_counter`` (2 FLOPs per
multiply-accumulate; convolutions, matmuls and attention; grid_sample, norms and element-wise ops not counted).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["LatencyStats", "count_gflops", "count_parameters", "measure_latency"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_gflops(model: nn.Module, input_size: tuple[int, int] = (640, 640), batch: int = 1) -> float:
    """Forward GFLOPs of ``model`` in eval mode on a ``[batch, 3, H, W]`` input."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.rand(batch, 3, *input_size, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over the timed runs."""

    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    runs: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def of(cls, times: Sequence[float]) -> LatencyStats:
        """Statistics of measured milliseconds (p90 by nearest rank)."""
        if not times:
            raise ValueError("no timings")
        ordered = sorted(times)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        return cls(statistics.median(ordered), p90, ordered[0], ordered[-1], statistics.fmean(ordered), len(ordered))


def measure_latency(
    fn: Callable[[], object], warmup: int = 3, runs: int = 10, sync: Callable[[], None] | None = None
) -> LatencyStats:
    """Time ``fn()`` ``runs`` times after ``warmup`` untimed calls (``sync`` e.g. ``torch.cuda.synchronize``)."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return LatencyStats.of(times)
