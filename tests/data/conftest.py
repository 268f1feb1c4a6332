"""Small datasets written on the fly in each format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return path


@pytest.fixture
def coco_dir(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    root.mkdir()
    for i in (1, 2, 3):
        write_image(root / "images" / "train" / f"{i}.png")
    data = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 48} for i in (1, 2, 3)],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [50, 40, 30, 30], "iscrowd": 0},  # clipped
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5, 5, 0, 4], "iscrowd": 0},  # degenerate
            {"id": 4, "image_id": 2, "category_id": 99, "bbox": [5, 5, 4, 4], "iscrowd": 0},  # unknown category
            {"id": 5, "image_id": 42, "category_id": 3, "bbox": [5, 5, 4, 4], "iscrowd": 0},  # unknown image
            {"id": 6, "image_id": 2, "category_id": 3, "bbox": [1, 1, 9, 9], "iscrowd": 1},  # crowd: skipped
            {"id": 7, "image_id": 2, "category_id": 3, "bbox": "oops", "iscrowd": 0},
        ],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    return root


@pytest.fixture
def yolo_dir(tmp_path: Path) -> Path:
    root = tmp_path / "yolo"
    root.mkdir()
    for name in ("a", "b", "c"):
        write_image(root / "images" / "train" / f"{name}.jpg", (100, 50))
    labels = root / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.25 0.25 0.1 0.1\n\n")
    (labels / "b.txt").write_text("5 0.5 0.5 0.1 0.1\n0 0.5 0.5\n1 x 0.5 0.1 0.1\n1.5 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/train\nnames: {0: car, 1: bus}\n")
    return root


@pytest.fixture
def voc_dir(tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    root.mkdir()
    ann = root / "Annotations"
    ann.mkdir()
    obj = "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>5</ymin><xmax>{}</xmax><ymax>20</ymax></bndbox></object>"
    for i, objs in enumerate([[("cell", 1, 30), ("blob", 10, 10)], [("cell", 2, 60)]]):
        write_image(root / "JPEGImages" / f"im{i}.jpg")
        body = "".join(obj.format(*o) for o in objs)
        (ann / f"im{i}.xml").write_text(
            f"<annotation><filename>im{i}.jpg</filename><size><width>64</width>"
            f"<height>48</height></size>{body}</annotation>"
        )
    (ann / "broken.xml").write_text("<annotation><object>")
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("im0\nim1\nbroken\n")
    return root
