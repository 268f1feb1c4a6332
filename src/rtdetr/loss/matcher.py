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

    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        """
        Args:
            outputs: ``pred_logits`` ``[B, Q, C]``, ``pred_boxes`` ``[B, Q, 4]`` normalised cxcywh.
            targets: per image ``labels`` ``[N_i]`` and ``boxes`` ``[N_i, 4]`` normalised cxcywh.

        Returns:
            Per image ``(query_idx, target_idx)``, both int64 of length ``min(Q, N_i)`` (empty for ``N_i = 0``), on
            the predictions' device.

        Raises:
            FloatingPointError: if the predictions hold NaN/inf (a diverged step; the trainer skips it).
        """
        return self.match_many([(outputs, targets)])[0]

    @torch.no_grad()
    def match_many(
        self, groups: list[tuple[dict[str, Tensor], list[dict[str, Tensor]]]]
    ) -> list[list[tuple[Tensor, Tensor]]]:
        """:meth:`forward` for several ``(outputs, targets)`` groups (decoder layers, encoder proposals) with one
        device-to-CPU copy for all of them: on a GPU, one synchronisation per training step instead of two per
        group. The results are those of matching each group alone, on the predictions' device (on a GPU they go
        back in one asynchronous copy, so indexing with them does not wait for the GPU)."""
        costs, checks, plans = [], [], []
        for outputs, targets in groups:
            sizes = [int(t["boxes"].shape[0]) for t in targets]
            plans.append(sizes)
            if sum(sizes) == 0:
                continue
            logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
            checks.append(torch.isfinite(logits).all() & torch.isfinite(boxes).all())
            costs.append(self._cost(logits, boxes, targets).flatten())
        if checks:
            flat = torch.cat([torch.stack(checks).to(costs[0].dtype), *costs]).cpu()  # the one copy
            if not bool(flat[: len(checks)].all()):
                raise FloatingPointError("non-finite predictions reached the matcher")
            host = iter(flat[len(checks) :].split([c.numel() for c in costs]))
        empty = torch.zeros(0, dtype=torch.int64)
        results = []
        for (outputs, _), sizes in zip(groups, plans):
            if sum(sizes) == 0:
                results.append([(empty, empty) for _ in sizes])
                continue
            bs, nq = outputs["pred_logits"].shape[:2]
            cost = next(host).view(bs, nq, -1)
            indices = []
            for i, c in enumerate(cost.split(sizes, -1)):
                if sizes[i] == 0:
                    indices.append((empty, empty))
                    continue
                rows, cols = linear_sum_assignment(c[i].numpy())
                indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
            results.append(indices)
        return _to_device(results, groups[0][0]["pred_logits"].device) if groups else results

    def _cost(self, logits: Tensor, boxes: Tensor, targets: list[dict[str, Tensor]]) -> Tensor:
        """``[B, Q, N]`` matching cost of every query against every target of the batch (``N = sum N_i``), in at
        least fp32 (AMP outputs are promoted, fp64 stays). Non-finite predictions give non-finite costs, which
        :meth:`match_many` refuses once it has them on the CPU."""
        bs, nq = logits.shape[:2]
        dtype = torch.promote_types(logits.dtype, torch.float32)
        prob = logits.flatten(0, 1).to(dtype).sigmoid()  # [B*Q, C]
        out_bbox = boxes.flatten(0, 1).to(dtype)  # [B*Q, 4]
        tgt_ids = torch.cat([t["labels"] for t in targets])
        tgt_bbox = torch.cat([t["boxes"] for t in targets]).to(out_bbox)

        p = prob[:, tgt_ids]  # [B*Q, N]
        neg = (1 - self.alpha) * p**self.gamma * -(1 - p + 1e-8).log()
        pos = self.alpha * (1 - p) ** self.gamma * -(p + 1e-8).log()
        cost_class = pos - neg
        cost_bbox = torch.cdist(out_bbox, tgt_bbox, p=1)
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(out_bbox), box_cxcywh_to_xyxy(tgt_bbox), check=False)
        cost = self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou
        return cost.view(bs, nq, -1)


def _to_device(results: list[list[tuple[Tensor, Tensor]]], device: torch.device) -> list[list[tuple[Tensor, Tensor]]]:
    """Every index tensor moved to ``device`` in one copy (pinned and asynchronous on CUDA: no synchronisation)."""
    flat = [t for indices in results for pair in indices for t in pair]
    if device.type == "cpu" or not flat:
        return results
    host = torch.cat(flat)
    moved = iter((host.pin_memory() if device.type == "cuda" else host).to(device, non_blocking=True).split(
        [t.numel() for t in flat]))  # fmt: skip
    return [[(next(moved), next(moved)) for _ in indices] for indices in results]
