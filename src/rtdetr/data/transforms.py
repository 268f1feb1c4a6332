"""Detection augmentations in torch (no torchvision). Each op maps a :class:`Sample` to a :class:`Sample`.

Images are float ``[3, H, W]`` in ``[0, 1]``; boxes are absolute xyxy ``[N, 4]``; labels ``[N]`` int64. The
training pipeline follows the official one: photometric distort (p 0.5), zoom-out (p 0.5), IoU crop (p 0.8),
sanitise, horizontal flip, resize (aspect ratio not kept), sanitise, then normalised cxcywh boxes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from rtdetr.ops.boxes import box_iou, box_xyxy_to_cxcywh

__all__ = [
    "Compose",
    "HorizontalFlip",
    "PhotometricDistort",
    "RandomIoUCrop",
    "Resize",
    "Sample",
    "Sanitize",
    "ZoomOut",
    "build_train_transforms",
    "build_val_transforms",
    "image_to_tensor",
    "resize_pil",
    "rgb_to_hsv",
    "hsv_to_rgb",
]


@dataclass
class Sample:
    image: Tensor
    boxes: Tensor
    labels: Tensor

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.image.shape[-2]), int(self.image.shape[-1])


def image_to_tensor(img: Image.Image) -> Tensor:
    """PIL RGB -> float ``[3, H, W]`` in ``[0, 1]``."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def resize_pil(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resized to ``(height, width)`` by Pillow's bilinear filter (antialiased), aspect ratio not kept:
    what the official pipeline's ``Resize`` does to its PIL images, and what validation and ``predict`` do."""
    return image.resize((size[1], size[0]), Image.Resampling.BILINEAR)


def _rand(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def rgb_to_hsv(img: Tensor) -> Tensor:
    """``[3, H, W]`` RGB in [0, 1] -> HSV with hue in [0, 1)."""
    r, g, b = img.unbind(0)
    maxc, _ = img.max(0)
    minc, _ = img.min(0)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    d = delta.clamp(min=1e-12)
    h = torch.where(maxc == r, ((g - b) / d) % 6, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h)) % 1.0
    return torch.stack([h, s, maxc])


def hsv_to_rgb(img: Tensor) -> Tensor:
    h, s, v = img.unbind(0)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    r = torch.stack([v, q, p, p, t, v]).gather(0, i[None])[0]
    g = torch.stack([t, v, v, q, p, p]).gather(0, i[None])[0]
    b = torch.stack([p, p, t, v, v, q]).gather(0, i[None])[0]
    return torch.stack([r, g, b])


class PhotometricDistort:
    """Random brightness, contrast, saturation, hue and channel order, each applied with probability ``p``.

    Torchvision's ``RandomPhotometricDistort`` on a float image, the official recipe's op. Contrast and saturation
    blend towards the grey image of ``grey`` weights (contrast towards its mean over the whole image): ITU-R 601,
    as Pillow's ``convert("L")`` makes it, because the official pipeline distorts PIL images, where torchvision
    runs Pillow's ImageEnhance (its tensor kernel weighs red 0.2989).
    """

    stoppable = True

    def __init__(
        self,
        p: float = 0.5,
        brightness: tuple[float, float] = (0.875, 1.125),
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue: tuple[float, float] = (-0.05, 0.05),
        grey: tuple[float, float, float] = (0.299, 0.587, 0.114),
    ) -> None:
        self.p, self.brightness, self.contrast, self.saturation, self.hue = p, brightness, contrast, saturation, hue
        self.grey = grey

    def _grey(self, img: Tensor) -> Tensor:
        """``[3, H, W]`` RGB -> ``[H, W]`` grey."""
        return self.grey[0] * img[0] + self.grey[1] * img[1] + self.grey[2] * img[2]

    def _contrast(self, img: Tensor) -> Tensor:
        gray = self._grey(img).mean()
        return (gray + (img - gray) * _rand(*self.contrast)).clamp(0, 1)

    def __call__(self, s: Sample) -> Sample:
        img = s.image
        if random.random() < self.p:
            img = (img * _rand(*self.brightness)).clamp(0, 1)
        contrast_first = random.random() < 0.5
        if contrast_first and random.random() < self.p:
            img = self._contrast(img)
        if random.random() < self.p:
            gray = self._grey(img)
            img = (gray + (img - gray) * _rand(*self.saturation)).clamp(0, 1)
        if random.random() < self.p:
            hsv = rgb_to_hsv(img)
            hsv[0] = (hsv[0] + _rand(*self.hue)) % 1.0
            img = hsv_to_rgb(hsv).clamp(0, 1)
        if not contrast_first and random.random() < self.p:
            img = self._contrast(img)
        if random.random() < self.p:
            img = img[torch.randperm(3)]
        return replace(s, image=img)


class ZoomOut:
    """Place the image on a larger canvas (side ratio in ``side_range``) filled with ``fill``."""

    stoppable = True

    def __init__(self, fill: float = 0.0, side_range: tuple[float, float] = (1.0, 4.0), p: float = 0.5) -> None:
        self.fill, self.side_range, self.p = fill, side_range, p

    def __call__(self, s: Sample) -> Sample:
        if random.random() >= self.p:
            return s
        h, w = s.size
        r = _rand(*self.side_range)
        ch, cw = int(h * r), int(w * r)
        top, left = int((ch - h) * float(torch.rand(()))), int((cw - w) * float(torch.rand(())))
        canvas = torch.full((3, ch, cw), self.fill, dtype=s.image.dtype)
        canvas[:, top : top + h, left : left + w] = s.image
        offset = torch.tensor([left, top, left, top], dtype=s.boxes.dtype)
        return Sample(canvas, s.boxes + offset, s.labels)


class RandomIoUCrop:
    """SSD-style crop: a random window whose IoU with some box reaches a sampled threshold; boxes whose centre
    falls outside the window are dropped."""

    stoppable = True

    def __init__(
        self,
        min_scale: float = 0.3,
        max_scale: float = 1.0,
        min_aspect: float = 0.5,
        max_aspect: float = 2.0,
        options: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
        trials: int = 40,
        p: float = 0.8,
        max_draws: int = 50,
    ) -> None:
        self.min_scale, self.max_scale = min_scale, max_scale
        self.min_aspect, self.max_aspect = min_aspect, max_aspect
        self.options, self.trials, self.p, self.max_draws = list(options), trials, p, max_draws

    def __call__(self, s: Sample) -> Sample:
        if random.random() >= self.p or len(s.boxes) == 0:
            return s
        h, w = s.size
        centres = (s.boxes[:, :2] + s.boxes[:, 2:]) / 2
        for _ in range(self.max_draws):
            min_iou = random.choice(self.options)
            if min_iou >= 1.0:
                return s
            for _ in range(self.trials):
                sw, sh = _rand(self.min_scale, self.max_scale), _rand(self.min_scale, self.max_scale)
                nw, nh = int(w * sw), int(h * sh)
                if nh == 0 or not self.min_aspect <= nw / nh <= self.max_aspect:
                    continue
                left, top = int((w - nw) * float(torch.rand(()))), int((h - nh) * float(torch.rand(())))
                right, bottom = left + nw, top + nh
                if left == right or top == bottom:
                    continue
                inside = (
                    (centres[:, 0] > left) & (centres[:, 0] < right) & (centres[:, 1] > top) & (centres[:, 1] < bottom)
                )
                if not inside.any():
                    continue
                window = torch.tensor([[left, top, right, bottom]], dtype=s.boxes.dtype)
                if box_iou(s.boxes[inside], window)[0].max() < min_iou:
                    continue
                boxes = s.boxes[inside] - torch.tensor([left, top, left, top], dtype=s.boxes.dtype)
                boxes[:, 0::2] = boxes[:, 0::2].clamp(0, nw)
                boxes[:, 1::2] = boxes[:, 1::2].clamp(0, nh)
                return Sample(s.image[:, top:bottom, left:right], boxes, s.labels[inside])
        return s


class Sanitize:
    """Clip boxes to the image and drop those narrower or shorter than ``min_size`` pixels."""

    def __init__(self, min_size: float = 1.0) -> None:
        self.min_size = min_size

    def __call__(self, s: Sample) -> Sample:
        h, w = s.size
        b = s.boxes.clone()
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        keep = ((b[:, 2] - b[:, 0]) >= self.min_size) & ((b[:, 3] - b[:, 1]) >= self.min_size)
        return Sample(s.image, b[keep], s.labels[keep])


class HorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, s: Sample) -> Sample:
        if random.random() >= self.p:
            return s
        w = s.size[1]
        b = s.boxes[:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1], dtype=s.boxes.dtype)
        b[:, 0::2] += w
        return Sample(s.image.flip(-1), b, s.labels)


class Resize:
    """Resize to ``(height, width)`` without keeping the aspect ratio (bilinear with antialiasing).

    ``pil``: Pillow's bilinear resize of the image as uint8 (a float image is rounded to 8-bit levels first, which
    changes nothing in an image read from a file), the pixels of the official pipeline (PIL images throughout)
    and of ``predict``; else PyTorch's antialiased kernel on the float image (within one grey level of it).
    """

    def __init__(self, size: tuple[int, int], pil: bool = False) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.pil = pil

    def __call__(self, s: Sample) -> Sample:
        h, w = s.size
        if (h, w) == self.size:
            return s
        if self.pil:
            levels = s.image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            img = image_to_tensor(resize_pil(Image.fromarray(levels), self.size))
        else:
            img = F.interpolate(s.image[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)[0]
        scale = torch.tensor([self.size[1] / w, self.size[0] / h] * 2, dtype=s.boxes.dtype)
        return Sample(img.clamp(0, 1), s.boxes * scale, s.labels)


class StopsAtEpoch:
    """State of an augmentation that turns off for the last epochs: ``stopped`` once ``epoch >= stop_epoch``
    (``None``: never), or when the trainer says so (dynamic augmentation)."""

    def __init__(self, stop_epoch: int | None = None) -> None:
        self.stop_epoch = stop_epoch
        self.epoch = 0
        self.stopped = False

    def set_epoch(self, epoch: int, stopped: bool | None = None) -> None:
        """Start epoch ``epoch``; ``stopped`` (default: ``epoch >= stop_epoch``) turns the augmentation off."""
        self.epoch = epoch
        self.stopped = stopped if stopped is not None else self.stop_epoch is not None and epoch >= self.stop_epoch


class Compose(StopsAtEpoch):
    """Apply ops in order; ops marked ``stoppable`` are skipped once stopped (:class:`StopsAtEpoch`)."""

    def __init__(self, ops: Sequence[object], stop_epoch: int | None = None) -> None:
        super().__init__(stop_epoch)
        self.ops = list(ops)

    def __call__(self, s: Sample) -> Sample:
        for op in self.ops:
            if self.stopped and getattr(op, "stoppable", False):
                continue
            s = op(s)  # type: ignore[operator]
        return s


def build_train_transforms(
    size: tuple[int, int], stop_epoch: int | None = None, strong: bool = True, hflip: bool = True
) -> Compose:
    """The official training pipeline (``strong=False`` drops photometric distort, zoom-out and IoU crop)."""
    ops: list[object] = [PhotometricDistort(), ZoomOut(), RandomIoUCrop(), Sanitize()] if strong else []
    ops += [HorizontalFlip()] if hflip else []
    ops += [Resize(size), Sanitize()]
    return Compose(ops, stop_epoch)


def build_val_transforms(size: tuple[int, int]) -> Compose:
    """Validation: Pillow's resize, as the official evaluation and ``predict`` resize."""
    return Compose([Resize(size, pil=True)])


def normalized_cxcywh(s: Sample) -> Tensor:
    """Boxes of ``s`` as ``[N, 4]`` cxcywh divided by the image width/height."""
    h, w = s.size
    return box_xyxy_to_cxcywh(s.boxes) / torch.tensor([w, h, w, h], dtype=s.boxes.dtype)


def default_scales(size: tuple[int, int], base: int = 640) -> list[tuple[int, int]]:
    """The official multi-scale list (480..800 around 640, 640 three times) scaled to ``size`` ``(h, w)``: each
    side scaled by the same factor, so a non-square input keeps its aspect ratio, as ``(h, w)`` multiples of 32."""
    ref = [480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800]

    def scaled(side: int, s: int) -> int:
        return max(32, int(math.floor(s * side / base / 32 + 0.5)) * 32)

    return [(scaled(size[0], s), scaled(size[1], s)) for s in ref]
