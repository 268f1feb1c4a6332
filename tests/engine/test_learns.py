"""Training really learns: a small model overfits one fixed batch, its loss falls by a stated factor and its
boxes land on the targets. A criterion or matcher bug (wrong box format, swapped costs, detached gradients)
stalls this."""

from __future__ import annotations

import torch

from rtdetr.loss import RTDETRCriterion
from rtdetr.models import PostProcessor, create_model
from rtdetr.ops.boxes import box_cxcywh_to_xyxy, box_iou
from tests.engine.conftest import TINY_MODEL


def _batch() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Two 64x64 images with bright rectangles on dark noise; class = which colour channel is lit."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 64, 64, generator=g) * 0.2
    boxes = [torch.tensor([[0.3, 0.3, 0.3, 0.4], [0.75, 0.7, 0.3, 0.3]]), torch.tensor([[0.5, 0.45, 0.5, 0.3]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    for img, bx, lb in zip(images, boxes, labels):
        for (cx, cy, w, h), c in zip(bx.tolist(), lb.tolist()):
            x0, y0, x1, y1 = (round(v * 64) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            img[c, y0:y1, x0:x1] = 1.0
    return images, [{"labels": lb, "boxes": bx} for lb, bx in zip(labels, boxes)]


def test_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = create_model("rtdetr_r18vd", num_classes=3, **TINY_MODEL)
    criterion = RTDETRCriterion(3)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, foreach=True)
    images, targets = _batch()
    losses = []
    model.train()
    for _ in range(150):
        loss = sum(criterion(model(images, targets), targets).values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1, foreach=True)
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first / 3, f"loss {first:.2f} -> {last:.2f}: less than a 3x drop"

    model.eval()
    with torch.no_grad():
        dets = PostProcessor(3, num_top_queries=10)(model(images), torch.tensor([[64, 64], [64, 64]]))
    for det, tgt in zip(dets, targets):
        gt = box_cxcywh_to_xyxy(tgt["boxes"]) * 64
        for j, label in enumerate(tgt["labels"].tolist()):
            same = det["labels"] == label
            assert same.any(), f"class {label} never predicted"
            best = det["scores"][same].argmax()
            iou = box_iou(det["boxes"][same][best : best + 1], gt[j : j + 1])[0].item()
            assert iou > 0.5, f"top class-{label} box misses its target (IoU {iou:.2f})"
