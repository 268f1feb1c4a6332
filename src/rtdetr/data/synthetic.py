"""The embedded default dataset: generated scenes of coloured shapes, written to disk in COCO format.

Classes: circle, square, triangle, cross. Each image has 1-6 objects of varied size (6-45% of the side), colour
and rotation-free pose on one of four background kinds (flat, gradient, noise, stripes); objects avoid heavy
overlap. Fully deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPE_CLASSES", "make_synthetic_coco"]

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")


def _background(rng: random.Random, size: int) -> Image.Image:
    kind = rng.choice(["flat", "gradient", "noise", "stripes"])
    base = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    if kind == "flat":
        arr = np.broadcast_to(base, (size, size, 3)).copy()
    elif kind == "gradient":
        other = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
        t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        arr = np.broadcast_to(base * (1 - t) + other * t, (size, size, 3)).copy()
        if rng.random() < 0.5:
            arr = arr.transpose(1, 0, 2).copy()
    elif kind == "noise":
        coarse = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 40, (size // 8, size // 8, 3))
        arr = base + np.kron(coarse, np.ones((8, 8, 1)))[:size, :size]
    else:
        period = rng.randint(8, 32)
        stripes = ((np.arange(size) // period) % 2).astype(np.float32)[None, :, None]
        other = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
        arr = np.broadcast_to(base * stripes + other * (1 - stripes), (size, size, 3)).copy()
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _draw(draw: ImageDraw.ImageDraw, cls: int, box: tuple[int, int, int, int], color: tuple[int, ...]) -> None:
    x0, y0, x1, y1 = box
    if cls == 0:
        draw.ellipse(box, fill=color)
    elif cls == 1:
        draw.rectangle(box, fill=color)
    elif cls == 2:
        draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=color)
    else:
        tw, th = (x1 - x0) / 3, (y1 - y0) / 3
        draw.rectangle([x0 + tw, y0, x1 - tw, y1], fill=color)
        draw.rectangle([x0, y0 + th, x1, y1 - th], fill=color)


def _iou(a: list[int], b: list[int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def make_synthetic_coco(
    root: str | Path, num_train: int = 600, num_val: int = 150, size: int = 256, seed: int = 0
) -> dict[str, Path]:
    """Write ``root/{train,val}/*.jpg`` and ``root/annotations/instances_{train,val}.json``.

    Existing files are reused when the annotation json records the same generation settings.

    Returns:
        ``{"train": json path, "val": json path}``.
    """
    root = Path(root)
    settings = {"num_train": num_train, "num_val": num_val, "size": size, "seed": seed, "version": 1}
    out = {}
    for split, count, split_seed in (("train", num_train, seed), ("val", num_val, seed + 1)):
        ann_path = root / "annotations" / f"instances_{split}.json"
        out[split] = ann_path
        if ann_path.is_file():
            try:
                if json.loads(ann_path.read_text()).get("info", {}).get("settings") == settings:
                    continue
            except json.JSONDecodeError:
                pass
        (root / split).mkdir(parents=True, exist_ok=True)
        ann_path.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(split_seed)
        images: list[dict] = []
        anns: list[dict] = []
        for i in range(count):
            img = _background(rng, size)
            draw = ImageDraw.Draw(img)
            placed: list[list[int]] = []
            for _ in range(rng.randint(1, 6)):
                for _attempt in range(20):
                    side = rng.uniform(0.06, 0.45) * size
                    w = int(side * rng.uniform(0.75, 1.33))
                    h = int(side * rng.uniform(0.75, 1.33))
                    x0, y0 = rng.randint(0, size - w - 1), rng.randint(0, size - h - 1)
                    box = [x0, y0, x0 + w, y0 + h]
                    if all(_iou(box, b) < 0.15 for b in placed):
                        break
                else:
                    continue
                cls = rng.randrange(len(SHAPE_CLASSES))
                _draw(draw, cls, (box[0], box[1], box[2], box[3]), tuple(rng.randint(0, 255) for _ in range(3)))
                placed.append(box)
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": cls + 1,
                        "bbox": [box[0], box[1], w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
            name = f"{split}_{i:05d}.jpg"
            img.save(root / split / name, quality=92)
            images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        cats = [{"id": k + 1, "name": n} for k, n in enumerate(SHAPE_CLASSES)]
        data = {
            "info": {"description": "rtdetr synthetic shapes", "settings": settings},
            "images": images,
            "annotations": anns,
            "categories": cats,
        }
        tmp = ann_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(ann_path)
    return out
