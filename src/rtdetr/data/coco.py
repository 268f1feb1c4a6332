"""COCO json (``instances_*.json``): categories are remapped to contiguous labels in sorted-id order."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rtdetr.data.records import DataError, DatasetIndex, ImageRecord, finite_number, image_side, sanitize_boxes

__all__ = ["COCO_CLASSES", "load_coco"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing or invalid '{key}' list (not a COCO detection file?)")
    if not isinstance(data.get("annotations", []), list):
        raise DataError(f"{path}: 'annotations' must be a list")
    return data


def load_coco(ann_file: str | Path, image_dir: str | Path | None = None) -> DatasetIndex:
    """Parse a COCO detection json.

    Args:
        ann_file: the json.
        image_dir: folder of the images (default: guessed from the layout ``<root>/annotations/x.json`` ->
            ``<root>/<split>`` or ``<root>/images/<split>``, else the json's folder).

    A ``file_name`` is read with ``/`` or ``\\`` separators, against the first of the guessed folders where the
    file is (Label Studio writes ``images/x.jpg`` beside its ``images/`` folder); failing that, by its base name
    there (said in ``notes``).

    Crowd annotations are skipped; boxes are clipped to the image; degenerate boxes, annotations of unknown
    images or categories and malformed entries are dropped and listed in ``problems``.
    """
    ann_path = Path(ann_file)
    data = _read_json(ann_path)
    cats = [c for c in data["categories"] if isinstance(c, dict) and isinstance(c.get("id"), int)]
    if not cats:
        raise DataError(f"{ann_path}: no valid categories")
    cats = _unique_categories(cats, ann_path)
    cat_to_label = {c["id"]: i for i, c in enumerate(cats)}
    names = [str(c.get("name", c["id"])) for c in cats]
    folders = [Path(image_dir)] if image_dir is not None else _guess_image_dirs(ann_path)
    index = DatasetIndex([], names, "coco", str(ann_path), category_ids=[c["id"] for c in cats])

    if "annotations" not in data:
        index.notes.append(f"{ann_path} has no 'annotations' list: every image counts as having no objects")
    images: dict[int, dict] = {}
    moved = 0
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not isinstance(img.get("file_name"), str):
            index.drop("malformed image entry", f"{ann_path}: images[{i}] lacks an integer 'id' or 'file_name'")
            continue
        first = images.setdefault(img["id"], img)
        if first is not img:
            index.drop(
                "duplicate image id",
                f"{ann_path}: images[{i}] ({img['file_name']}) repeats id {img['id']} of {first['file_name']}: "
                "the first entry is kept and gets every annotation of that id",
            )

    per_image: dict[int, list[tuple[list[float], int]]] = defaultdict(list)
    for i, ann in enumerate(data.get("annotations", [])):
        where = f"{ann_path}: annotations[{i}]"
        if not isinstance(ann, dict):
            index.drop("malformed annotation", f"{where} is not an object")
            continue
        if ann.get("iscrowd", 0):
            continue
        img_id, cat = ann.get("image_id"), ann.get("category_id")
        if img_id not in images:
            index.drop("unknown image id", f"{where}: image_id {img_id!r} not in 'images'")
            continue
        if cat not in cat_to_label:
            index.drop("unknown category", f"{where}: category_id {cat!r} not in 'categories'")
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(finite_number(v) for v in bbox)):
            index.drop("malformed bbox", f"{where}: bbox {bbox!r} is not 4 finite numbers [x, y, w, h]")
            continue
        x, y, bw, bh = (float(v) for v in bbox)
        per_image[img_id].append(([x, y, x + bw, y + bh], cat_to_label[cat]))

    for img_id, img in images.items():
        anns = per_image.get(img_id, [])
        boxes = np.array([a[0] for a in anns], dtype=np.float32).reshape(-1, 4)
        labels = np.array([a[1] for a in anns], dtype=np.int64)
        w, h = image_side(img.get("width")), image_side(img.get("height"))
        if w is None or h is None:
            w = h = None  # read from the file
        boxes, labels = sanitize_boxes(boxes, labels, w, h, index, f"{ann_path}: image {img['file_name']}")
        path, by_base_name = _locate(img["file_name"], folders)
        moved += by_base_name
        index.records.append(ImageRecord(path, boxes, labels, img_id, w, h))
    if moved:
        index.notes.append(
            f"{moved} images are not where their file_name says and were found by base name in "
            f"{', '.join(str(f) for f in folders)}"
        )
    return index


def _locate(file_name: str, folders: list[Path]) -> tuple[Path, bool]:
    """An image's path: ``file_name`` (either separator) under the first folder holding it, else its base name
    under one (True: found so), else under the first folder (reported missing later)."""
    rel = Path(file_name.replace("\\", "/"))
    for f in folders:
        if (f / rel).is_file():
            return f / rel, False
    for f in folders:
        if rel.name != str(rel) and (f / rel.name).is_file():
            return f / rel.name, True
    return folders[0] / rel, False


def _unique_categories(cats: list[dict], ann_path: Path) -> list[dict]:
    """Categories sorted by id; an id listed twice under one name counts once, under two names it is an error."""
    by_id: dict[int, dict] = {}
    for c in cats:
        first = by_id.setdefault(c["id"], c)
        if str(first.get("name")) != str(c.get("name")):
            raise DataError(
                f"{ann_path}: category id {c['id']} is listed twice, as {first.get('name')!r} and {c.get('name')!r}"
            )
    return sorted(by_id.values(), key=lambda c: c["id"])


def _guess_image_dirs(ann_path: Path) -> list[Path]:
    """The folders a json's ``file_name`` may be relative to, most likely first: ``<root>/<split>``,
    ``<root>/images/<split>``, ``<root>/images``, ``images/`` beside the json, the root, the json's folder."""
    root = ann_path.parent.parent if ann_path.parent.name == "annotations" else ann_path.parent
    split = ann_path.stem.split("_", 1)[-1]  # instances_train2017 -> train2017
    guesses = (root / split, root / "images" / split, root / "images", ann_path.parent / "images", root)
    return list(dict.fromkeys([c for c in guesses if c.is_dir()] + [ann_path.parent]))


#: The 80 COCO detection classes in contiguous-label order (category ids ascending).
COCO_CLASSES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)
