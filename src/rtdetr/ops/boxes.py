"""Box utilities (torch only; no torchvision).

Formats:
    * ``cxcywh``: centre x, centre y, width, height.
    * ``xyxy``: top-left x, top-left y, bottom-right x, bottom-right y.
Boxes are either normalised to ``[0, 1]`` by the image size or absolute pixels; the functions here do
not care which, as long as both arguments of a pairwise function use the same convention.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xyxy_to_cxcywh",
    "generalized_box_iou",
    "inverse_sigmoid",
    "paired_box_iou",
    "paired_generalized_box_iou",
]


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` cxcywh -> ``[..., 4]`` xyxy."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xyxy -> ``[..., 4]`` cxcywh."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xyxy -> ``[...]`` area (negative extents count as zero)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU.

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.

    Returns:
        ``(iou, union)``, both ``[N, M]``. Degenerate boxes give IoU 0 rather than NaN.
    """
    return _iou_union(boxes1[:, None], boxes2[None])


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor, check: bool = True) -> Tensor:
    """Pairwise generalised IoU (Rezatofighi et al. 2019).

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.
        check: validate the boxes (below). The check reads the tensors back (a synchronisation on a GPU): the
            criterion and matcher turn it off and validate once per step instead.

    Returns:
        ``[N, M]`` GIoU in ``[-1, 1]``.

    Raises:
        ValueError: if any box has ``x1 < x0`` or ``y1 < y0`` or is not finite (the usual symptom of labels or
            boxes that were never normalised, or of a diverged model).
    """
    for name, b in (("boxes1", boxes1), ("boxes2", boxes2)) if check else ():
        if b.numel() and (not torch.isfinite(b).all() or (b[:, 2:] < b[:, :2]).any()):
            raise ValueError(f"generalized_box_iou: {name} holds degenerate or non-finite xyxy boxes")
    return _giou(boxes1[:, None], boxes2[None])


def paired_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of each box with its partner: ``[N, 4]`` and ``[N, 4]`` xyxy -> ``[N]``, equal to the diagonal of
    :func:`box_iou` without its ``N x N`` matrix (the loss's matched pairs: thousands with denoising groups)."""
    return _iou_union(boxes1, boxes2)[0]


def paired_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of each box with its partner: ``[N, 4]`` and ``[N, 4]`` xyxy -> ``[N]``, the diagonal of
    :func:`generalized_box_iou` (unchecked) computed pair by pair."""
    return _giou(boxes1, boxes2)


def _iou_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """IoU and union of broadcastable ``[..., 4]`` xyxy boxes."""
    lt = torch.max(boxes1[..., :2], boxes2[..., :2])
    rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    iou = inter / union.clamp(min=torch.finfo(union.dtype).tiny)
    return iou, union


def _giou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of broadcastable ``[..., 4]`` xyxy boxes."""
    iou, union = _iou_union(boxes1, boxes2)
    lt = torch.min(boxes1[..., :2], boxes2[..., :2])
    rb = torch.max(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull.clamp(min=torch.finfo(hull.dtype).tiny)


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Logit with clipping, as in the official code: ``log(clip(x, eps) / clip(1 - x, eps))`` on ``x`` in [0, 1]."""
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
