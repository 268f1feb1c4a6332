"""Format-independent dataset index: one record per image with absolute xyxy boxes and contiguous labels.

Parsers never crash on one bad entry: they drop it, count it and describe it in ``problems`` (file and reason),
so a training run loses only what is broken. A file that cannot be parsed at all raises :class:`DataError`.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "DataError",
    "DatasetIndex",
    "ImageRecord",
    "IMAGE_SUFFIXES",
    "SPLIT_FOLDERS",
    "SPLIT_NAMES",
    "sanitize_boxes",
]

#: split folder names tried for a split, first found wins (Roboflow's exports name the validation folder ``valid``)
SPLIT_FOLDERS = {"val": ("val", "valid", "validation"), "valid": ("valid", "val", "validation")}
#: folder names that are a split's own folder
SPLIT_NAMES = frozenset({"train", "val", "valid", "validation", "test"})

#: image files by extension (a GIF: its first frame; HEIC/HEIF with ``pillow-heif`` installed)
IMAGE_SUFFIXES = (
    *(".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"),
    *(".avif", ".jp2", ".heic", ".heif"),
)


class DataError(ValueError):
    """A dataset file is unusable; the message names the file and the problem."""


@dataclass
class ImageRecord:
    """One image and its ground truth.

    Attributes:
        path: image file.
        boxes: ``[N, 4]`` float32 absolute xyxy pixels in the stored image's frame.
        labels: ``[N]`` int64 contiguous class ids ``0..C-1``.
        image_id: integer id (COCO id when the source is COCO, else the position).
        width, height: image size when the annotation states it (None = read from the file).
        ignore_boxes: ``[M, 4]`` float32 absolute xyxy boxes of objects that are neither training targets nor
            scored (VOC ``difficult`` objects): evaluation counts a detection on one as neither hit nor miss.
        ignore_labels: ``[M]`` int64 class ids of ``ignore_boxes``.
    """

    path: Path
    boxes: np.ndarray
    labels: np.ndarray
    image_id: int
    width: int | None = None
    height: int | None = None
    ignore_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ignore_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def stated_size(self) -> tuple[int, int] | None:
        """``(width, height)`` as the annotation states it; None where it states none."""
        return (self.width, self.height) if self.width and self.height else None


@dataclass
class DatasetIndex:
    """A parsed dataset: records, class names, and every problem met while parsing."""

    records: list[ImageRecord]
    class_names: list[str]
    format: str
    source: str
    category_ids: list[int] | None = None
    """Original category id of each contiguous label (COCO), for writing results in the source's ids."""
    problems: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    """Count of dropped entries by reason."""
    notes: list[str] = field(default_factory=list)
    """What the parser decided for the user (a split it made, files it did not use, likely typos)."""
    adjusted: Counter = field(default_factory=Counter)
    """Count of kept entries the parser changed, by reason (e.g. boxes clipped to the image)."""
    unknown_classes: Counter = field(default_factory=Counter)
    """Objects left out because their class name is not in :attr:`class_names`, by that name (VOC)."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def num_boxes(self) -> int:
        return int(sum(len(r.labels) for r in self.records))

    def adjust(self, reason: str, detail: str, max_listed: int = 200) -> None:
        """Record an entry that was kept but changed."""
        self.adjusted[reason] += 1
        if len(self.problems) < max_listed:
            self.problems.append(detail)

    def drop(self, reason: str, detail: str, max_listed: int = 200) -> None:
        self.dropped[reason] += 1
        if len(self.problems) < max_listed:
            self.problems.append(detail)


#: how far (pixels) past the image edge a box may reach before its clipping is reported
CLIP_SLACK_PX = 0.5


def _box(box: np.ndarray) -> list[float]:
    """A box for a message: its coordinates to two decimals (``148.96``, not float32's ``148.96000671386719``)."""
    return [round(float(v), 2) + 0.0 for v in box]  # + 0.0: no -0.0


def sanitize_boxes(
    boxes: np.ndarray,
    labels: np.ndarray,
    width: int | None,
    height: int | None,
    index: DatasetIndex,
    where: str,
    min_size: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop non-finite and inverted xyxy boxes, clip the rest to the image (each clip reported), then drop the
    ones smaller than ``min_size`` (all counted, by reason)."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing values become inf and are dropped below
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(boxes) == 0:
        return boxes, labels
    finite = np.isfinite(boxes).all(1)
    for i in np.flatnonzero(~finite):
        index.drop("non-finite box", f"{where}: box {i} has non-finite coordinates {boxes[i].tolist()}")
    boxes, labels = boxes[finite], labels[finite]
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    for i in np.flatnonzero(inverted):
        index.drop("inverted box", f"{where}: box {_box(boxes[i])} has x2 < x1 or y2 < y1 (not [x1, y1, x2, y2]?)")
    boxes, labels = boxes[~inverted], labels[~inverted]
    if width is not None and height is not None:
        clipped = boxes.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
        # a box past the edge by under half a pixel is rounding in the label file (YOLO's cx - w/2 = -1e-6): clipped
        # without a word, so that the problems listed are the labels worth a look
        for i in np.flatnonzero((np.abs(clipped - boxes) > CLIP_SLACK_PX).any(1)):
            index.adjust(
                "box clipped to the image",
                f"{where}: box {_box(boxes[i])} reaches past the {width}x{height} image; clipped to {_box(clipped[i])}",
            )
        boxes = clipped
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ok = (w >= min_size) & (h >= min_size)
    for i in np.flatnonzero(~ok):
        index.drop("degenerate box", f"{where}: box {_box(boxes[i])} is smaller than {min_size} px after clipping")
    return boxes[ok], labels[ok]


MAX_SIDE = 1 << 20
"""Largest plausible image side in pixels; an annotation claiming more is treated as stating no size."""


def image_side(x: object) -> int | None:
    """A stated image width/height (number or numeric string) as an int in ``1..MAX_SIDE``, else None."""
    if isinstance(x, bool):
        return None
    try:
        v = float(x) if isinstance(x, int | float | str) and str(x).strip() else math.nan
    except (ValueError, OverflowError):
        return None
    return int(v) if math.isfinite(v) and 1 <= v <= MAX_SIDE else None


def finite_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


HEIF_SUFFIXES = (".heic", ".heif")


@functools.cache
def heif_opener() -> bool:
    """Register pillow-heif's HEIC/HEIF opener with Pillow if it is installed (once per process); False if not."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


#: ISO-BMFF brands of HEIC/HEIF files (bytes 8..12, after ``ftyp``); AVIF's own brand Pillow reads itself
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def is_heif(source: Any) -> bool:
    """Whether a path or binary file object holds a HEIC/HEIF image, by its extension or its first 12 bytes (a
    file object is left where it was)."""
    try:
        if isinstance(source, str | Path):
            if str(source).lower().endswith(HEIF_SUFFIXES):
                return True
            with open(source, "rb") as f:
                head = f.read(12)
        else:
            pos = source.tell()
            head = source.read(12)
            source.seek(pos)
    except (OSError, AttributeError, ValueError):
        return False
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


#: EXIF orientations that swap width and height (transposed, or turned by 90 or 270 degrees)
SWAPS_SIDES = frozenset({5, 6, 7, 8})


def swaps_sides(im: Image.Image) -> bool:
    """Whether an opened image's EXIF orientation turns it by 90 or 270 degrees (or transposes it) for display."""
    return im.getexif().get(0x0112) in SWAPS_SIDES


def shown_size(im: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of an opened image as a viewer shows it (EXIF orientation applied), from its header."""
    w, h = im.size
    return (h, w) if swaps_sides(im) else (w, h)


def image_file_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from an image file's header, as shown (a phone photo stored turned, with an EXIF
    orientation tag, has its sides swapped back: YOLO labels are normalised to the picture as shown); HEIC/HEIF
    through pillow-heif, registered when Pillow alone cannot read a file that is one. Raises OSError."""
    try:
        with Image.open(path) as im:
            return shown_size(im)
    except OSError:
        if "HEIF" in Image.OPEN or not (is_heif(path) and heif_opener()):
            raise
    with Image.open(path) as im:
        return shown_size(im)


def find_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
