"""Anchor generation and (IoU-aware) top-k encoder query selection.

The paper's IoU-aware selection has no extra module at inference: queries are the top-k encoder tokens by
class score, and the "IoU awareness" comes from training those scores with varifocal loss against the IoU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["gather_tokens", "generate_anchors", "topk_indices"]


def generate_anchors(
    spatial_shapes: Sequence[tuple[int, int]],
    grid_size: float = 0.05,
    eps: float = 1e-2,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """One anchor per memory token, as logits.

    Level ``l`` of size ``(h, w)`` gets centres ``((x + 0.5) / w, (y + 0.5) / h)`` and size ``grid_size * 2**l``.

    Returns:
        ``anchors``: ``[1, V, 4]`` inverse-sigmoid cxcywh, ``+inf`` where invalid;
        ``valid_mask``: ``[1, V, 1]`` bool, True where all four coordinates lie in ``(eps, 1 - eps)``.
    """
    levels = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        gy, gx = torch.meshgrid(
            torch.arange(h, dtype=dtype, device=device), torch.arange(w, dtype=dtype, device=device), indexing="ij"
        )
        xy = (torch.stack([gx, gy], -1) + 0.5) / torch.tensor([w, h], dtype=dtype, device=device)
        wh = torch.full_like(xy, grid_size * 2.0**lvl)
        levels.append(torch.cat([xy, wh], -1).reshape(1, h * w, 4))
    anchors = torch.cat(levels, 1)
    valid = ((anchors > eps) & (anchors < 1 - eps)).all(-1, keepdim=True)
    anchors = torch.log(anchors / (1 - anchors))
    anchors = torch.where(valid, anchors, torch.full_like(anchors, float("inf")))
    return anchors, valid


def topk_indices(logits: Tensor, k: int, method: str = "default") -> Tensor:
    """Indices ``[B, k]`` of the top-``k`` encoder tokens.

    Args:
        logits: ``[B, V, C]`` encoder class logits (``C == 1`` for ``"agnostic"``).
        method: ``"default"`` ranks tokens by their best class, ``"one2many"`` ranks (token, class) pairs
            (a token may be picked more than once), ``"agnostic"`` ranks the single score.
    """
    if method in ("default", "agnostic"):
        return torch.topk(logits.max(-1).values, k, dim=-1).indices
    if method == "one2many":
        return torch.topk(logits.flatten(1), k, dim=-1).indices // logits.shape[-1]
    raise ValueError(f"unknown query selection method {method!r}")


def gather_tokens(t: Tensor, idx: Tensor) -> Tensor:
    """``t`` ``[B or 1, V, X]`` at token indices ``idx`` ``[B, k]`` -> ``[B, k, X]``."""
    return t.expand(idx.shape[0], -1, -1).gather(1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
