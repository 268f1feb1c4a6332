"""Torch dataset over a :class:`DatasetIndex`, robust image loading, and the batch collator."""

from __future__ import annotations

import logging
import math
import os
import random
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset

from rtdetr.data.mix import MixAugment
from rtdetr.data.records import DatasetIndex, ImageRecord, heif_opener, is_heif, swaps_sides
from rtdetr.data.transforms import Compose, Resize, Sample, StopsAtEpoch, image_to_tensor, normalized_cxcywh, resize_pil

__all__ = [
    "BatchCollator",
    "DetectionDataset",
    "ImageTooLarge",
    "load_cover",
    "load_image",
    "load_image_covering",
    "shown_rgb",
    "shrunk_size",
]

log = logging.getLogger(__name__)

Target = dict[str, Tensor]


class ImageTooLarge(OSError):
    """The image has more pixels than allowed (decompression-bomb guard)."""


def load_image(path: str | object, name: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Open an image (a path or a binary file object) as RGB with its EXIF orientation applied (grayscale,
    palette, RGBA and 16-bit handled).

    Args:
        name: how messages call the image (default: ``path``).
        max_pixels: refuse larger images before decoding them (default: Pillow's decompression-bomb limit).

    Raises:
        ImageTooLarge: more than ``max_pixels`` pixels.
        OSError: (or a subclass) when the file is missing, truncated or not an image; the message names the file.
    """
    return load_image_covering(path, None, name, max_pixels)[0]


def load_image_covering(
    path: str | object,
    cover: tuple[int, int] | None,
    name: str | None = None,
    max_pixels: int | None = None,
    annotated_size: tuple[int, int] | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`load_image`, shrunk (aspect ratio kept) to the smallest size that still covers ``cover``
    ``(height, width)`` where the image is larger: a JPEG decodes at a reduced DCT scale (Pillow's draft mode),
    other formats are resized (antialiased). ``cover=None`` keeps the full resolution.

    ``annotated_size`` ``(width, height)``, the size an annotation states: where it is the *stored* size of a photo
    whose EXIF orientation swaps its sides (a tool that showed the photo unturned, as labelImg does, annotated
    those pixels), the photo is kept as stored, so that the annotation's boxes lie on what they were drawn on.

    Returns:
        the RGB image and the ``(width, height)`` of the full-resolution image (as shown, or as kept).
    """
    name = str(path) if name is None else name
    start = path.tell() if hasattr(path, "tell") else None  # a file object: where its image begins
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode_rgb(path, name, max_pixels, cover, annotated_size)
    except ImageTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        if max_pixels is not None:  # our limit is the one the caller set, whatever Pillow's own is
            raise ImageTooLarge(f"{name}: more pixels than the limit of {max_pixels}") from None
        raise ImageTooLarge(f"{name}: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if start is not None:
            path.seek(start)  # type: ignore[union-attr]
        # HEIC/HEIF (by extension or content: an upload's bytes have no name) is looked for only when Pillow fails,
        # so other images pay nothing; pillow-heif, where installed, is registered then and the image read again
        heif = is_heif(path)
        if heif and "HEIF" not in Image.OPEN and heif_opener():
            return load_image_covering(path, cover, name, max_pixels, annotated_size)
        # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" (or '<path>'): the name is said already
        reason = re.sub(r"^cannot identify image file .*", "not an image format Pillow reads", str(e))
        if reason.startswith("not an image format") and _empty(path, start):  # an interrupted copy, typically
            reason = "an empty file: 0 bytes"
        hint = "; HEIC/HEIF photos need pillow-heif: pip install pillow-heif" if heif and not heif_opener() else ""
        raise OSError(f"{name}: cannot decode image ({reason}){hint}") from None


def _empty(path: str | object, start: int | None) -> bool:
    """Whether ``path`` (a path, or a file object standing at ``start``, where its image begins) holds no
    bytes; a file object is left where it was."""
    try:
        if start is None:
            return os.path.getsize(path) == 0  # type: ignore[arg-type]
        f: Any = path
        empty = not f.read(1)
        f.seek(start)
        return empty
    except (OSError, TypeError, ValueError):
        return False


def load_cover(image_size: tuple[int, int], shrink_above: float) -> tuple[int, int] | None:
    """The ``(height, width)`` images are shrunk to cover when loaded for a network input of ``image_size``
    (h, w): ``shrink_above`` times it (``DataConfig.shrink_above``); None where that is 0 (full resolution)."""
    if not shrink_above:
        return None
    return math.ceil(image_size[0] * shrink_above), math.ceil(image_size[1] * shrink_above)


def shrunk_size(size: tuple[int, int], cover: tuple[int, int]) -> tuple[int, int]:
    """The ``(width, height)`` that ``size`` (w, h) is shrunk to, aspect ratio kept, so that it still covers
    ``cover`` (h, w) on both sides; ``size`` itself where it does not exceed that."""
    w, h = size
    s = max(cover[1] / w, cover[0] / h)
    if s >= 1.0:
        return w, h
    return max(cover[1], round(w * s)), max(cover[0], round(h * s))


def _decode_rgb(
    path: str | object,
    name: str,
    max_pixels: int | None,
    cover: tuple[int, int] | None = None,
    annotated_size: tuple[int, int] | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`load_image_covering`'s decoding, its errors raised as Pillow raises them."""
    with Image.open(path) as opened:  # type: ignore[arg-type]
        w, h = opened.size
        if max_pixels is not None and w * h > max_pixels:
            raise ImageTooLarge(f"{name}: {w}x{h} is {w * h} pixels, more than the limit of {max_pixels}")
        swap = swaps_sides(opened)
        turn = not (swap and w != h and annotated_size == (w, h))  # else annotated on the stored pixels: keep them
        swap = swap and turn
        full = (h, w) if swap else (w, h)  # as shown (EXIF orientation applied), or as kept
        target = shrunk_size(full, cover) if cover is not None else full
        if target != full:  # a JPEG decodes at the smallest DCT scale that still covers it (no-op elsewhere)
            opened.draft(None, (target[1], target[0]) if swap else target)
        opened.load()
        im = shown_rgb(opened, turn)
        if cover is None:
            return im, im.size
        if im.size != target:
            im = im.resize(target, Image.Resampling.BILINEAR)
        return im, full


def shown_rgb(image: Image.Image, turn: bool = True) -> Image.Image:
    """``image`` as a viewer shows it, in RGB: EXIF orientation applied (a phone photo stored turned; not with
    ``turn`` false), 16- and 32-bit integer images scaled by their maximum to 0..255, grayscale / palette / RGBA
    converted."""
    im: Image.Image = (ImageOps.exif_transpose(image) or image) if turn else image
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float32)
        im = Image.fromarray((arr / max(float(arr.max()), 1.0) * 255).astype(np.uint8))
    return im.convert("RGB")


class DetectionDataset(Dataset):
    """Samples ``(image [3, H, W] float in [0, 1], target)`` with target keys ``boxes`` (normalised cxcywh),
    ``labels``, ``image_id``, ``orig_size`` (w, h) and ``size`` (h, w after transforms).

    A file that fails to decode is reported once (by name) and replaced by the next readable image, so an epoch
    never stops on one corrupt file; :attr:`bad_files` lists them (per worker process).

    ``mix`` (training) composes each sample with other random samples after ``transforms`` (mosaic, mixup,
    copy-paste; :mod:`rtdetr.data.mix`); the target then describes the composite, under the first image's id.

    ``load_cover`` ``(height, width)``: an image larger than that on both sides is shrunk when loaded (aspect ratio
    kept, JPEGs decoded at a reduced scale) to the smallest size still covering it, before the transforms run, so
    that 12-megapixel photos cost about what small images do.

    ``orig_size`` is the size of the frame the annotation's boxes are in, which detections are scaled to for
    evaluation: the full-resolution image, or the size the annotation states where it differs (an annotation
    made before the images were resized: its boxes are rescaled to the image for training, and the detections
    back to the annotation's frame for scoring).
    """

    def __init__(
        self,
        index: DatasetIndex,
        transforms: Callable[[Sample], Sample] | None = None,
        mix: MixAugment | None = None,
        load_cover: tuple[int, int] | None = None,
    ) -> None:
        self.index = index
        self.transforms = transforms
        self.mix = mix
        self.load_cover = load_cover
        self.bad_files: set[str] = set()

    def __len__(self) -> int:
        return len(self.index.records)

    @property
    def class_names(self) -> list[str]:
        return self.index.class_names

    def set_epoch(self, epoch: int, stopped: bool | None = None) -> None:
        """Start epoch ``epoch``: ``stopped`` turns strong augmentation off (default: the transforms decide)."""
        if hasattr(self.transforms, "set_epoch"):
            self.transforms.set_epoch(epoch, stopped)  # type: ignore[union-attr]
        if self.mix is not None:
            self.mix.stopped = bool(stopped)

    def load(self, i: int) -> tuple[Image.Image, ImageRecord, tuple[int, int]]:
        """The image of record ``i`` (no transforms; shrunk to ``load_cover``), its record and the full-resolution
        image's ``(width, height)``; raises OSError for unreadable files."""
        rec = self.index.records[i]
        img, full = load_image_covering(rec.path, self.load_cover, annotated_size=rec.stated_size)
        return img, rec, full

    def __getitem__(self, i: int) -> tuple[Tensor, Target]:
        s, rec, (w, h) = self._readable(i)
        if self.mix is not None and self.mix.active:
            s = self.mix(s, lambda: self._readable(random.randrange(len(self)))[0])
        target = {
            "boxes": normalized_cxcywh(s).float(),
            "labels": s.labels,
            "image_id": torch.tensor(rec.image_id),
            "orig_size": torch.tensor([w, h]),
            "size": torch.tensor(s.size),
        }
        return s.image, target

    def _readable(self, i: int) -> tuple[Sample, ImageRecord, tuple[int, int]]:
        """The transformed sample of record ``i`` or, if its file cannot be read, of the next readable one; the
        record and the (width, height) of the annotation's frame (:attr:`orig_size`)."""
        n = len(self)
        for step in range(n):
            j = (i + step) % n
            try:
                img, rec, full = self.load(j)
            except OSError as e:
                if str(self.index.records[j].path) not in self.bad_files:
                    self.bad_files.add(str(self.index.records[j].path))
                    log.warning("skipping unreadable image: %s", e)
                continue
            frame = rec.stated_size or full
            return self._sample(img, rec, frame), rec, frame
        raise RuntimeError(f"no readable image in {self.index.source}")

    def _sample(self, img: Image.Image, rec: ImageRecord, frame: tuple[int, int]) -> Sample:
        """Record ``rec``'s boxes, given in ``frame`` (w, h), on the loaded ``img``, transformed."""
        first = self.transforms.ops[0] if isinstance(self.transforms, Compose) and self.transforms.ops else None
        if isinstance(first, Resize) and first.pil:  # validation: Pillow resizes the uint8 image it loaded (the
            img = resize_pil(img, first.size)  # pixels Resize(pil=True) gives, without a round trip through float)
        w, h = img.size
        s = Sample(
            image_to_tensor(img),
            torch.from_numpy(rec.boxes).float().reshape(-1, 4),
            torch.from_numpy(rec.labels).long(),
        )
        if frame != (w, h) and len(s.boxes):  # a shrunk image, or an annotation made for another size of it
            s.boxes = s.boxes * torch.tensor([w / frame[0], h / frame[1]] * 2)
        return self.transforms(s) if self.transforms is not None else s


class BatchCollator(StopsAtEpoch):
    """Stack equally sized images; with ``scales`` (``(h, w)`` sizes) every training batch is resized (nearest) to
    one of them, drawn at random, until ``stop_epoch`` (normalised boxes need no change)."""

    def __init__(self, scales: Sequence[tuple[int, int]] | None = None, stop_epoch: int | None = None) -> None:
        super().__init__(stop_epoch)  # once stopped, multi-scale is off
        self.scales = list(scales) if scales else None

    def __call__(self, batch: list[tuple[Tensor, Target]]) -> tuple[Tensor, list[Target]]:
        images = [b[0] for b in batch]
        targets = [b[1] for b in batch]
        sizes = {tuple(im.shape[-2:]) for im in images}
        if len(sizes) > 1:
            hmax = max(s[0] for s in sizes)
            wmax = max(s[1] for s in sizes)
            raise ValueError(
                f"images in a batch differ in size {sorted(sizes)}; resize them to one size "
                f"(e.g. {hmax}x{wmax}) in the transforms"
            )
        x = torch.stack(images)
        if self.scales and not self.stopped:
            x = F.interpolate(x, size=random.choice(self.scales))
        return x, targets
