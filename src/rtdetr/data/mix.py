"""Augmentations that compose several training images into one: mosaic, mixup and (box-level) copy-paste.

They put more objects in each training image, so each one-to-one matching step supervises more queries (the
"dense one-to-one" idea of DEIM, arXiv 2412.04234). They run after the per-image pipeline, on samples that
already have the network's input size: images float ``[3, H, W]`` in ``[0, 1]``, boxes absolute xyxy ``[N, 4]``,
labels ``[N]``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rtdetr.data.transforms import Sample
from rtdetr.ops.boxes import box_iou

__all__ = ["MixAugment", "copy_paste", "mixup", "mosaic"]

#: A box cut by the mosaic window is kept when at least this share of its area stays visible.
MIN_VISIBLE = 0.3


def _clip_boxes(boxes: Tensor, labels: Tensor, window: tuple[float, float, float, float]) -> tuple[Tensor, Tensor]:
    """Boxes shifted into ``window`` (x0, y0, x1, y1), clipped to it; boxes with less than :data:`MIN_VISIBLE` of
    their area (or under 1 px a side) inside are dropped."""
    x0, y0, x1, y1 = window
    shifted = boxes - torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
    clipped = shifted.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, x1 - x0)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, y1 - y0)
    wh = clipped[:, 2:] - clipped[:, :2]
    area = (shifted[:, 2:] - shifted[:, :2]).prod(1).clamp(min=1e-6)
    keep = (wh >= 1).all(1) & (wh.prod(1) >= MIN_VISIBLE * area)
    return clipped[keep], labels[keep]


def mosaic(samples: list[Sample], scale: tuple[float, float] = (0.5, 1.0)) -> Sample:
    """Four equally sized samples on a 2x2 grid, then a random window of ``1/s`` times the input size (``s`` drawn
    from ``scale``) anywhere on the grid, resized back to the input size: objects appear at ``s`` times their size.

    Args:
        samples: 4 samples of one size ``(H, W)``.
    """
    if len(samples) != 4 or len({s.size for s in samples}) != 1:
        raise ValueError("mosaic needs 4 samples of one size")
    h, w = samples[0].size
    canvas = torch.cat(
        [torch.cat([samples[0].image, samples[1].image], 2), torch.cat([samples[2].image, samples[3].image], 2)], 1
    )
    offsets = [(0, 0), (w, 0), (0, h), (w, h)]
    boxes = torch.cat([s.boxes + torch.tensor([dx, dy, dx, dy], dtype=s.boxes.dtype) for s, (dx, dy) in
                       zip(samples, offsets)])  # fmt: skip
    labels = torch.cat([s.labels for s in samples])
    s = random.uniform(*scale)
    cw, ch = min(2 * w, round(w / s)), min(2 * h, round(h / s))
    left, top = random.randint(0, 2 * w - cw), random.randint(0, 2 * h - ch)
    crop = canvas[:, top : top + ch, left : left + cw]
    boxes, labels = _clip_boxes(boxes, labels, (left, top, left + cw, top + ch))
    if (ch, cw) != (h, w):
        crop = F.interpolate(crop[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
        boxes = boxes * torch.tensor([w / cw, h / ch, w / cw, h / ch], dtype=boxes.dtype)
    return Sample(crop.clamp(0, 1), boxes, labels)


def mixup(a: Sample, b: Sample, ratio: tuple[float, float] = (0.4, 0.6)) -> Sample:
    """Blend two samples of one size (``a`` weighted by a ratio drawn from ``ratio``); both sets of boxes kept."""
    if a.size != b.size:
        raise ValueError(f"mixup needs samples of one size, got {a.size} and {b.size}")
    lam = random.uniform(*ratio)
    return Sample(a.image * lam + b.image * (1 - lam), torch.cat([a.boxes, b.boxes]), torch.cat([a.labels, b.labels]))


def copy_paste(a: Sample, b: Sample, max_objects: int = 8, max_overlap: float = 0.1, trials: int = 5) -> Sample:
    """Paste up to ``max_objects`` box patches of ``b`` onto ``a`` at random places, each where it overlaps no
    box already there by more than ``max_overlap`` IoU (box-level: the patch is the whole rectangle)."""
    img, boxes, labels = a.image.clone(), a.boxes.clone(), a.labels.clone()
    h, w = a.size
    order = torch.randperm(len(b.boxes))[:max_objects]
    for k in order.tolist():
        x0, y0, x1, y1 = (int(round(v)) for v in b.boxes[k].tolist())
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(b.size[1], x1), min(b.size[0], y1)
        pw, ph = x1 - x0, y1 - y0
        if pw < 2 or ph < 2 or pw >= w or ph >= h:
            continue
        for _ in range(trials):
            nx, ny = random.randint(0, w - pw), random.randint(0, h - ph)
            new = torch.tensor([[nx, ny, nx + pw, ny + ph]], dtype=boxes.dtype)
            if len(boxes) and float(box_iou(new, boxes)[0].max()) > max_overlap:
                continue
            img[:, ny : ny + ph, nx : nx + pw] = b.image[:, y0:y1, x0:x1]
            boxes = torch.cat([boxes, new])
            labels = torch.cat([labels, b.labels[k : k + 1]])
            break
    return Sample(img, boxes, labels)


@dataclass
class MixAugment:
    """Mosaic with probability ``mosaic``, then mixup with probability ``mixup`` (with another, possibly mosaic,
    sample), then copy-paste with probability ``copy_paste``; ``draw()`` gives another random training sample of
    the same size. Off (the sample unchanged) while :attr:`stopped`."""

    mosaic: float = 0.0
    mixup: float = 0.0
    copy_paste: float = 0.0
    mosaic_scale: tuple[float, float] = (0.5, 1.0)
    stopped: bool = False

    @property
    def active(self) -> bool:
        return not self.stopped and max(self.mosaic, self.mixup, self.copy_paste) > 0

    def _maybe_mosaic(self, s: Sample, draw: Callable[[], Sample]) -> Sample:
        if random.random() < self.mosaic:
            return mosaic([s, draw(), draw(), draw()], self.mosaic_scale)
        return s

    def __call__(self, s: Sample, draw: Callable[[], Sample]) -> Sample:
        if not self.active:
            return s
        s = self._maybe_mosaic(s, draw)
        if random.random() < self.mixup:
            s = mixup(s, self._maybe_mosaic(draw(), draw))
        if random.random() < self.copy_paste:
            s = copy_paste(s, draw())
        return s
