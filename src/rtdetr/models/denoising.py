"""Contrastive denoising query groups (DN-DETR / DINO style), used in training only.

Each group holds ``max_gt`` positive queries (ground truth boxes jittered by less than half their size) and
``max_gt`` negative queries (jittered by 1-2x half their size); labels are flipped at random. Groups cannot see
each other, and the matching queries cannot see any denoising query.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rtdetr.ops.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, inverse_sigmoid

__all__ = ["DenoisingGroup", "build_denoising_group"]

#: Where the label and box noise is drawn: ``None`` on the model's device; the CPU under
#: :func:`rtdetr.ops.compare.denoising_noise_on_cpu`, so that a CPU and a CUDA model given the same seed draw the
#: same groups (each device has its own generator).
NOISE_DEVICE: torch.device | None = None


@dataclass
class DenoisingGroup:
    """Denoising inputs for the decoder.

    Attributes:
        content: ``[B, N_dn, D]`` label embeddings.
        ref_unact: ``[B, N_dn, 4]`` noised cxcywh boxes as logits.
        attn_mask: ``[N_dn + Q, N_dn + Q]`` bool, True = blocked.
        positive_idx: per image, ``[num_gt * num_group]`` indices of its positive queries (in group order).
        num_group: number of groups.
        num_split: ``[N_dn, Q]``.
    """

    content: Tensor
    ref_unact: Tensor
    attn_mask: Tensor
    positive_idx: list[Tensor]
    num_group: int
    num_split: list[int]

    def meta(self) -> dict:
        """The ``dn_meta`` dict carried in the model outputs for the criterion."""
        return {"dn_positive_idx": self.positive_idx, "dn_num_group": self.num_group, "dn_num_split": self.num_split}


def build_denoising_group(
    targets: list[dict[str, Tensor]],
    num_classes: int,
    num_queries: int,
    class_embed: nn.Embedding,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
) -> DenoisingGroup | None:
    """Build the denoising queries for a batch.

    Args:
        targets: per image ``{"labels": [N_i] int64, "boxes": [N_i, 4] normalised cxcywh}``.
        class_embed: ``num_classes + 1`` rows; row ``num_classes`` (padding) embeds padded slots.

    Returns:
        None when ``num_denoising <= 0``. When no image in the batch has a box, one masked dummy group is built so
        every process runs the same graph under DDP (an empty batch must not skip the embedding).
    """
    if num_denoising <= 0:
        return None
    device = class_embed.weight.device
    num_gts = [int(t["labels"].numel()) for t in targets]
    bs = len(targets)
    max_gt = max(num_gts) if num_gts else 0
    dummy = max_gt == 0
    if dummy:
        max_gt = 1
    num_group = 1 if dummy else max(1, num_denoising // max_gt)

    labels = torch.full((bs, max_gt), num_classes, dtype=torch.int64, device=device)
    boxes = torch.zeros((bs, max_gt, 4), device=device)  # padded slots: an empty box at the corner, as officially
    pad_mask = torch.zeros((bs, max_gt), dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        n = num_gts[i]
        if n:
            labels[i, :n] = t["labels"].to(device)
            boxes[i, :n] = t["boxes"].to(device, boxes.dtype)
            pad_mask[i, :n] = True

    labels = labels.repeat(1, 2 * num_group)
    boxes = boxes.repeat(1, 2 * num_group, 1)
    pad_mask = pad_mask.repeat(1, 2 * num_group)
    negative = torch.zeros((bs, 2 * max_gt, 1), device=device)
    negative[:, max_gt:] = 1
    negative = negative.repeat(1, num_group, 1)
    # positive query j of group k sits at k * 2 * max_gt + j (built from the counts: no read-back of ``positive``)
    starts = torch.arange(num_group, device=device)[:, None] * (2 * max_gt)
    positive_idx = [(starts + torch.arange(n, device=device)[None]).flatten() for n in num_gts]
    n_dn = 2 * max_gt * num_group

    noise = NOISE_DEVICE or device
    if label_noise_ratio > 0:
        flip = torch.rand(labels.shape, device=noise).to(device) < (label_noise_ratio * 0.5)
        new_labels = torch.randint_like(labels.to(noise), 0, num_classes).to(device)
        labels = torch.where(flip & pad_mask, new_labels, labels)

    if box_noise_scale > 0:
        xyxy = box_cxcywh_to_xyxy(boxes)
        diff = torch.cat([boxes[..., 2:] * 0.5, boxes[..., 2:] * 0.5], dim=-1) * box_noise_scale
        sign = torch.randint_like(boxes.to(noise), 0, 2).to(device) * 2.0 - 1.0
        part = torch.rand_like(boxes.to(noise)).to(device)
        part = (part + 1.0) * negative + part * (1 - negative)
        xyxy = (xyxy + sign * part * diff).clamp(0.0, 1.0)
        boxes = box_xyxy_to_cxcywh(xyxy)
    ref_unact = inverse_sigmoid(boxes)
    content = class_embed(labels)

    size = n_dn + num_queries
    attn_mask = torch.zeros((size, size), dtype=torch.bool, device=device)
    attn_mask[n_dn:, :n_dn] = True  # matching queries cannot see denoising queries
    g = 2 * max_gt
    for i in range(num_group):  # each group sees only itself among the denoising queries
        attn_mask[g * i : g * (i + 1), : g * i] = True
        attn_mask[g * i : g * (i + 1), g * (i + 1) : n_dn] = True
    return DenoisingGroup(content, ref_unact, attn_mask, positive_idx, num_group, [n_dn, num_queries])
