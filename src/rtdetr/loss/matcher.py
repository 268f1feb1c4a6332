"""Hungarian matching between predictions and ground truth (one-to-one, for the set-prediction loss)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from rtdetr.ops.boxes import box_cxcywh_to_xyxy, generalized_box_iou

__all__ = ["HungarianMatcher"]


class HungarianMatcher(nn.Module):
    """Assign each ground-truth box to one prediction by minimising
    ``cost_class * focal_cost + cost_bbox * L1(cxcywh) - cost_giou * GIoU``.

    The focal class cost (alpha 0.25, gamma 2) is
    ``alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p))`` on the sigmoid probability of the target class.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if cost_class == cost_bbox == cost_giou == 0:
            raise ValueError("all matcher costs are zero")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.alpha, self.gamma = alpha, gamma

    @torch.no_grad()
    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        """
        Args:
            outputs: ``pred_logits`` ``[B, Q, C]``, ``pred_boxes`` ``[B, Q, 4]`` normalised cxcywh.
            targets: per image ``labels`` ``[N_i]`` and ``boxes`` ``[N_i, 4]`` normalised cxcywh.

        Returns:
            Per image ``(query_idx, target_idx)``, both int64 of length ``min(Q, N_i)`` (empty for ``N_i = 0``).

        Raises:
            FloatingPointError: if the predictions hold NaN/inf (a diverged step; the trainer skips it).
        """
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        bs, nq = logits.shape[:2]
        sizes = [int(t["boxes"].shape[0]) for t in targets]
        empty = torch.zeros(0, dtype=torch.int64)
        if sum(sizes) == 0:
            return [(empty, empty) for _ in targets]
        if not (torch.isfinite(logits).all() and torch.isfinite(boxes).all()):
            raise FloatingPointError("non-finite predictions reached the matcher")
        dtype = torch.promote_types(logits.dtype, torch.float32)  # fp16/bf16 (AMP) costs in fp32, fp64 stays
        prob = logits.flatten(0, 1).to(dtype).sigmoid()  # [B*Q, C]
        out_bbox = boxes.flatten(0, 1).to(dtype)  # [B*Q, 4]
        tgt_ids = torch.cat([t["labels"] for t in targets])
        tgt_bbox = torch.cat([t["boxes"] for t in targets]).to(out_bbox)

        p = prob[:, tgt_ids]  # [B*Q, N]
        neg = (1 - self.alpha) * p**self.gamma * -(1 - p + 1e-8).log()
        pos = self.alpha * (1 - p) ** self.gamma * -(p + 1e-8).log()
        cost_class = pos - neg
        cost_bbox = torch.cdist(out_bbox, tgt_bbox, p=1)
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(out_bbox), box_cxcywh_to_xyxy(tgt_bbox))
        cost = self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou
        cost = cost.view(bs, nq, -1).cpu()

        indices = []
        for i, c in enumerate(cost.split(sizes, -1)):
            if sizes[i] == 0:
                indices.append((empty, empty))
                continue
            rows, cols = linear_sum_assignment(c[i].numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices
