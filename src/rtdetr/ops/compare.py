"""Comparing two sets of raw model outputs (deploy, export and conversion parity)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ["max_query_set_diff"]


def max_query_set_diff(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    """Largest difference between two outputs compared as *sets* of queries.

    Encoder top-k ranks queries by score; where scores tie or nearly tie (common with random weights, possible
    with trained ones), float-rounding differences between two equivalent computations can swap queries. Each
    query of ``a`` is therefore paired with one of ``b`` by an optimal assignment on the concatenated logits and
    boxes (max-norm cost) before the worst difference is taken.

    Args:
        a, b: ``pred_logits`` ``[B, Q, C]`` and ``pred_boxes`` ``[B, Q, 4]``.
    """
    worst = 0.0
    for la, ba, lb, bb in zip(a["pred_logits"], a["pred_boxes"], b["pred_logits"], b["pred_boxes"]):
        fa = torch.cat([la, ba], -1).detach().double().cpu()
        fb = torch.cat([lb, bb], -1).detach().double().cpu()
        cost = torch.cdist(fa, fb, p=float("inf"))
        rows, cols = linear_sum_assignment(cost.numpy())
        worst = max(worst, float(cost[rows, cols].max()))
    return worst
