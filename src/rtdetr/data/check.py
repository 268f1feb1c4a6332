"""``rtdetr check-data``: parse a dataset, decode every image, and summarise it and its problems."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtdetr.data.dataset import load_image_covering
from rtdetr.data.detect import DatasetFormat, load_index
from rtdetr.data.records import DatasetIndex, image_file_size

__all__ = ["DataReport", "check_dataset"]


@dataclass
class DataReport:
    index: DatasetIndex
    images_ok: int = 0
    unreadable: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    kept_unturned: list[str] = field(default_factory=list)
    """Photos annotated as stored, without their EXIF rotation: loaded so, for the boxes to fit."""
    boxes_per_class: Counter = field(default_factory=Counter)
    empty_images: int = 0
    split: str | None = None

    @property
    def usable(self) -> bool:
        """At least one readable image: training or validating on this data can start."""
        return self.images_ok > 0

    @property
    def ok(self) -> bool:
        return self.usable and not (self.unreadable or self.index.dropped)

    def format(self, limit: int = 15) -> str:
        idx = self.index
        lines = [
            f"dataset   {idx.source} ({idx.format}, split {self.split!r})",
            f"images    {len(idx.records)} ({self.images_ok} readable, {len(self.unreadable)} unreadable, "
            f"{self.empty_images} without boxes)",
            f"boxes     {idx.num_boxes()} in {idx.num_classes} classes",
        ]
        areas = np.concatenate(
            [(r.boxes[:, 2] - r.boxes[:, 0]) * (r.boxes[:, 3] - r.boxes[:, 1]) for r in idx.records] or [np.zeros(0)]
        )
        if len(areas):
            small = float((areas < 32**2).mean())
            lines.append(f"box area  median {np.median(areas):.0f} px^2; {small:.0%} small (< 32^2)")
        width = max((len(n) for n in idx.class_names), default=5)
        for i, name in enumerate(idx.class_names):
            lines.append(f"  {i:>3} {name:<{width}} {self.boxes_per_class.get(i, 0):>7}")
        lines += [f"note: {n}" for n in idx.notes]
        if idx.adjusted:
            lines.append("changed while parsing: " + ", ".join(f"{k}: {v}" for k, v in idx.adjusted.items()))
        if idx.dropped:
            lines.append("dropped while parsing: " + ", ".join(f"{k}: {v}" for k, v in idx.dropped.items()))
        if idx.dropped or idx.adjusted:
            lines += [f"  {p}" for p in idx.problems[:limit]]
            if len(idx.problems) > limit:
                lines.append(f"  ... {len(idx.problems) - limit} more")
        for title, items in (
            ("unreadable images", self.unreadable),
            (
                "size differs from annotation (its boxes are scaled to the image, detections scored in its frame)",
                self.size_mismatch,
            ),
            (
                "annotated unturned (the stated size is the stored one; loaded without the EXIF rotation to fit)",
                self.kept_unturned,
            ),
        ):
            if items:
                lines.append(f"{title}: {len(items)}")
                lines += [f"  {p}" for p in items[:limit]]
        if not self.usable:
            lines.append("NO USABLE IMAGES: nothing to train or validate on")
        else:
            lines.append("OK" if self.ok else "PROBLEMS FOUND (the loader skips the entries above)")
        return "\n".join(lines)


def check_dataset(
    path: str | Path, split: str = "train", format: DatasetFormat = "auto", decode: bool = True
) -> DataReport:
    """Parse the dataset and (with ``decode``) decode every image (a JPEG at a reduced scale: every byte is still
    read, so a truncated file is found)."""
    index = load_index(path, split, format, allow_empty=True)
    report = DataReport(index, split=split)
    for rec in index.records:
        report.boxes_per_class.update(rec.labels.tolist())
        report.empty_images += int(len(rec.labels) == 0)
        if not decode:
            continue
        stated = rec.stated_size
        try:  # every byte is decoded (a truncated file fails), a JPEG at 1/8 scale: 12 MP photos in 12 ms, not 140
            _, size = load_image_covering(rec.path, (1, 1), annotated_size=stated)
            shown = image_file_size(rec.path)
        except OSError as e:
            report.unreadable.append(str(e))
            continue
        report.images_ok += 1
        if stated and size != stated:
            report.size_mismatch.append(f"{rec.path}: {size[0]}x{size[1]}, annotated {stated[0]}x{stated[1]}")
        elif size != shown:
            report.kept_unturned.append(f"{rec.path}: stored {size[0]}x{size[1]}, shown {shown[0]}x{shown[1]}")
    if not decode:
        report.images_ok = len(index.records)
    return report
