"""Post-processing: sigmoid scores, top-k over (query x class), boxes scaled to the original image size.

No NMS and no score threshold: the model is end-to-end. Thresholding belongs to the caller (the predictor).
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtdetr.ops.boxes import box_cxcywh_to_xyxy

__all__ = ["COCO_LABEL_TO_CATEGORY", "ClassFilter", "PostProcessor", "class_mask"]

#: Classes to keep: ids kept in every image, or one entry per image (ids, or None for every class)
ClassFilter = Collection[int] | Sequence[Collection[int] | None] | None

# contiguous label 0..79 -> COCO category id (1..90 with gaps)
COCO_LABEL_TO_CATEGORY: tuple[int, ...] = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    27,
    28,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    67,
    70,
    72,
    73,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    82,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
)


def _is_id(c: object) -> bool:
    try:
        operator.index(c)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


def _ids_mask(ids: Collection[int] | None, num_classes: int) -> Tensor:
    """``[C]`` bool: True at ``ids`` (those in ``0..C-1``), everywhere for None."""
    if ids is None:
        return torch.ones(num_classes, dtype=torch.bool)
    if not all(_is_id(c) for c in ids):
        raise ValueError(f"class ids must be integers, got {ids!r}")
    mask = torch.zeros(num_classes, dtype=torch.bool)
    mask[[int(c) for c in ids if 0 <= int(c) < num_classes]] = True
    return mask


def class_mask(classes: ClassFilter, num_classes: int, batch: int) -> Tensor | None:
    """``classes`` as the bool mask :meth:`PostProcessor.detect` takes: ids kept in every image -> ``[C]``; one
    entry per image (ids, or None for every class) -> ``[B, C]``; None, or None for every image -> None. Ids
    outside ``0..C-1`` select nothing."""
    if classes is None:
        return None
    entries: list[Any] = list(classes)
    if all(_is_id(c) for c in entries):  # the same ids for every image ([]: none)
        return _ids_mask(entries, num_classes)
    if len(entries) != batch or any(c is not None and not isinstance(c, Collection) for c in entries):
        raise ValueError(f"classes must be class ids, or one entry (ids or None) per image of {batch}; got {classes!r}")
    if all(c is None for c in entries):
        return None
    return torch.stack([_ids_mask(c, num_classes) for c in entries])


class PostProcessor(nn.Module):
    """Turn raw outputs into detections.

    Args:
        num_classes: ``C``.
        num_top_queries: detections kept per image (``K``; at most ``Q * C``).
        use_focal_loss: sigmoid scores over all classes (RT-DETR); False uses softmax with a background class.
        label_map: optional ``label -> category id`` table applied to the output labels (e.g.
            :data:`COCO_LABEL_TO_CATEGORY` for COCO evaluation); vectorised, export-safe.
    """

    label_map: Tensor | None

    def __init__(
        self,
        num_classes: int = 80,
        num_top_queries: int = 300,
        use_focal_loss: bool = True,
        label_map: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_top_queries = num_top_queries
        self.use_focal_loss = use_focal_loss
        self.deploy_mode = False
        if label_map is not None and len(label_map) != num_classes:
            raise ValueError(f"label_map has {len(label_map)} entries for {num_classes} classes")
        self.register_buffer(
            "label_map",
            torch.tensor(label_map, dtype=torch.int64) if label_map is not None else None,
            persistent=False,
        )

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, num_top_queries={self.num_top_queries}"

    def deploy(self) -> PostProcessor:
        """Make ``forward`` return the ``(labels, boxes, scores)`` tuple (the exported graph's outputs)."""
        self.deploy_mode = True
        return self

    def detect(
        self, outputs: dict[str, Tensor], orig_sizes: Tensor, classes: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """
        Args:
            outputs: ``pred_logits`` ``[B, Q, C]`` and ``pred_boxes`` ``[B, Q, 4]`` (normalised cxcywh).
            orig_sizes: ``[B, 2]`` original ``(width, height)`` of each image.
            classes: optional ``[C]`` or ``[B, C]`` bool mask: the top ``K`` are taken among these classes (the
                scores of the others are set to 0, so they rank last).

        Returns:
            ``labels`` ``[B, K]`` int64, ``boxes`` ``[B, K, 4]`` absolute xyxy, ``scores`` ``[B, K]``, sorted by
            descending score.
        """
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        boxes = box_cxcywh_to_xyxy(boxes) * orig_sizes.to(boxes.dtype).repeat(1, 2).unsqueeze(1)
        num_classes = logits.shape[-1] - (0 if self.use_focal_loss else 1)  # softmax: + background
        probs = logits.sigmoid() if self.use_focal_loss else F.softmax(logits, dim=-1)[..., :-1]
        if classes is not None:
            probs = probs.masked_fill(~classes.to(logits.device, torch.bool).view(-1, 1, num_classes), 0.0)
        if self.use_focal_loss:
            flat = probs.flatten(1)
            k = min(self.num_top_queries, flat.shape[1])
            scores, index = torch.topk(flat, k, dim=-1)
            query = index // num_classes
            labels = index - query * num_classes  # == index % num_classes without a Mod op
        else:
            scores, labels = probs.max(-1)
            k = min(self.num_top_queries, scores.shape[1])
            scores, query = torch.topk(scores, k, dim=-1)
            labels = labels.gather(1, query)
        boxes = boxes.gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
        if self.label_map is not None:
            labels = self.label_map[labels]
        return labels, boxes, scores

    def forward(
        self, outputs: dict[str, Tensor], orig_sizes: Tensor, classes: Tensor | None = None
    ) -> list[dict[str, Tensor]] | tuple:
        """Per-image ``{"labels", "boxes", "scores"}`` dicts, or the raw tuple after :meth:`deploy` (``classes``:
        see :meth:`detect`)."""
        labels, boxes, scores = self.detect(outputs, orig_sizes, classes)
        if self.deploy_mode:
            return labels, boxes, scores
        return [{"labels": lb, "boxes": bx, "scores": sc} for lb, bx, sc in zip(labels, boxes, scores)]
