"""Pascal VOC: ``Annotations/*.xml`` + ``JPEGImages`` + optional ``ImageSets/Main/<split>.txt``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from rtdetr.data.records import DataError, DatasetIndex, ImageRecord, image_side, sanitize_boxes

__all__ = ["load_voc"]


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text else None


def load_voc(root: str | Path, split: str | None = "train", class_names: list[str] | None = None) -> DatasetIndex:
    """Parse a VOC dataset.

    Args:
        root: folder holding ``Annotations`` and ``JPEGImages``.
        split: name of an ``ImageSets/Main/<split>.txt`` list; None (or a missing list) takes every xml.
        class_names: fixed class order; default ``label_list.txt`` in ``root`` if present, else the sorted names
            found in the annotations of all splits (so train and val agree).

    ``difficult`` objects are kept. Unparsable xml files, unknown classes and degenerate boxes are dropped and
    reported.
    """
    root = Path(root)
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir():
        raise DataError(f"{root}: not a VOC dataset (no Annotations folder)")
    if split is not None and (root / "ImageSets" / "Main" / f"{split}.txt").is_file():
        ids = [
            s.split()[0] for s in (root / "ImageSets" / "Main" / f"{split}.txt").read_text().splitlines() if s.strip()
        ]
        xml_files = [ann_dir / f"{i}.xml" for i in ids]
    elif split is not None and (root / "ImageSets" / "Main").is_dir():
        raise DataError(f"{root}: no ImageSets/Main/{split}.txt")
    else:
        xml_files = sorted(ann_dir.glob("*.xml"))

    parsed: list[tuple[Path, ET.Element | None]] = []
    index = DatasetIndex([], [], "voc", str(root))
    for x in xml_files:
        try:
            parsed.append((x, ET.parse(x).getroot()))
        except (ET.ParseError, OSError) as e:
            index.drop("unparsable annotation", f"{x}: {e}")
    if class_names is None:
        label_list = root / "label_list.txt"
        if label_list.is_file():
            class_names = [s.strip() for s in label_list.read_text().splitlines() if s.strip()]
        else:
            found: set[str] = set()
            for x in sorted(ann_dir.glob("*.xml")):
                try:
                    found.update(_text(o, "name") or "" for o in ET.parse(x).getroot().iter("object"))
                except (ET.ParseError, OSError):
                    continue
            class_names = sorted(n for n in found if n)
    if not class_names:
        raise DataError(f"{root}: no object classes found")
    index.class_names = list(class_names)
    label_of = {n: i for i, n in enumerate(class_names)}

    for image_id, (x, node) in enumerate(parsed):
        assert node is not None
        filename = _text(node, "filename") or f"{x.stem}.jpg"
        size = node.find("size")
        w_s, h_s = _text(size, "width"), _text(size, "height")
        w, h = image_side(w_s), image_side(h_s)
        if (w_s or h_s) and (w is None or h is None):
            index.drop(
                "bad image size", f"{x}: <size> {w_s!r} x {h_s!r} is not two positive numbers; read from the image"
            )
            w = h = None
        boxes, labels = [], []
        for k, obj in enumerate(node.iter("object")):
            name = _text(obj, "name")
            if name not in label_of:
                index.drop("unknown class", f"{x}: object {k} has class {name!r} not in {class_names}")
                continue
            bb = obj.find("bndbox")
            try:
                coords = [float(_text(bb, t) or "nan") for t in ("xmin", "ymin", "xmax", "ymax")]
            except ValueError:
                index.drop("malformed bbox", f"{x}: object {k} has a non-numeric bndbox")
                continue
            boxes.append(coords)
            labels.append(label_of[name])
        arr, lab = sanitize_boxes(
            np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(labels), w, h, index, str(x)
        )
        img_path = img_dir / filename
        if not img_path.is_file() and (img_dir / f"{x.stem}.jpg").is_file():
            img_path = img_dir / f"{x.stem}.jpg"
        index.records.append(ImageRecord(img_path, arr, lab, image_id, w, h))
    return index
