"""Pascal VOC: ``Annotations/*.xml`` + ``JPEGImages`` (or the lowercase ``annotations/`` + ``images/`` export
layout) + optional ``ImageSets/Main/<split>.txt``; or the xml files beside the images (labelImg's default), in the
folder itself or in one folder per split (``train/``, ``valid/``, ``test/``: Roboflow's VOC export)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np

from rtdetr.data.records import (
    SPLIT_FOLDERS,
    SPLIT_NAMES,
    DataError,
    DatasetIndex,
    ImageRecord,
    find_images,
    image_side,
    sanitize_boxes,
)
from rtdetr.options import class_key

__all__ = ["has_xml", "load_voc"]


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text else None


def _subdir(root: Path, *names: str) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


#: Without ImageSets lists, one image in VAL_EVERY goes to validation (chosen by a hash of its file name).
VAL_EVERY = 5


def _split_without_lists(xml_files: list[Path], split: str, root: Path, index: DatasetIndex) -> list[Path]:
    """A deterministic split when the dataset has no ImageSets lists: validation takes every file whose name
    hashes to 0 modulo :data:`VAL_EVERY` (about 20%, the same on every machine), training the rest."""
    is_val = {x: zlib.crc32(x.stem.encode()) % VAL_EVERY == 0 for x in xml_files}
    if split in ("val", "valid", "validation", "test"):
        chosen = [x for x in xml_files if is_val[x]]
    elif split == "train":
        chosen = [x for x in xml_files if not is_val[x]]
    else:
        raise DataError(f"{root}: no ImageSets/Main/{split}.txt (without lists only train/val splits are made)")
    index.notes.append(
        f"no ImageSets/Main lists: split {split!r} is a fixed ~{100 // VAL_EVERY}% (val) / "
        f"{100 - 100 // VAL_EVERY}% (train) division of the {len(xml_files)} annotation files by name hash, "
        f"{len(chosen)} files; add ImageSets/Main/{split}.txt to choose"
    )
    return chosen


def has_xml(folder: Path) -> bool:
    """``folder`` is a folder holding an .xml file directly."""
    return folder.is_dir() and next(folder.glob("*.xml"), None) is not None


def _flat_split_folder(root: Path, split: str | None) -> Path | None:
    """``<root>/<split>`` holding xml files beside its images (a per-split export without Annotations/)."""
    if split is None or _subdir(root, "Annotations", "annotations") is not None:
        return None
    for name in SPLIT_FOLDERS.get(split, (split,)):
        if has_xml(root / name):
            return root / name
    return None


def _is_number(text: str | None) -> bool:
    try:
        return text is not None and math.isfinite(float(text))
    except ValueError:
        return False


def load_voc(root: str | Path, split: str | None = "train", class_names: list[str] | None = None) -> DatasetIndex:
    """Parse a VOC dataset.

    Args:
        root: folder holding ``Annotations`` and ``JPEGImages``.
        split: name of an ``ImageSets/Main/<split>.txt`` list. Without lists, ``train``/``val`` are a fixed
            division by file-name hash (:func:`_split_without_lists`, stated in ``notes``); None takes every xml.
        class_names: fixed class order; default ``label_list.txt`` in ``root`` if present, else the sorted names
            found in the annotations of all splits (so train and val agree).

    ``difficult`` objects go to the records' ``ignore_boxes``, as the VOC protocol has it: not training targets,
    and a detection on one is neither a hit nor a miss when scoring. Unparsable xml files, unknown classes and
    degenerate boxes are dropped and reported.
    """
    root = Path(root)
    per_split = _flat_split_folder(root, split)
    if per_split is not None:  # <root>/<split>/*.xml beside the images: the folder is the split
        root, split = per_split, None
    ann_dir, img_dir = _subdir(root, "Annotations", "annotations"), _subdir(root, "JPEGImages", "images")
    if ann_dir is None and has_xml(root):
        ann_dir = img_dir = root  # xml files beside the images
        if split is not None and root.name.lower() in SPLIT_NAMES:  # a split's own folder (export/valid): all of it
            split = None
    if ann_dir is None:
        splits = sorted(d.name + "/" for d in root.iterdir() if has_xml(d)) if root.is_dir() else []
        if splits:
            raise DataError(f"{root}: no folder for split {split!r} (the splits here: {', '.join(splits)})")
        raise DataError(
            f"{root}: not a VOC dataset (no Annotations/ or annotations/ folder of .xml files, and no .xml files "
            "beside the images; images go in JPEGImages/ or images/)"
        )
    img_dir = img_dir or root / "JPEGImages"
    index = DatasetIndex([], [], "voc", str(root))
    lists = root / "ImageSets" / "Main"
    if split is not None and (lists / f"{split}.txt").is_file():
        ids = [s.split()[0] for s in (lists / f"{split}.txt").read_text().splitlines() if s.strip()]
        xml_files = [ann_dir / f"{i}.xml" for i in ids]
    elif split is not None and lists.is_dir():
        raise DataError(f"{root}: no ImageSets/Main/{split}.txt")
    elif split is not None:
        xml_files = _split_without_lists(sorted(ann_dir.glob("*.xml")), split, root, index)
    else:
        xml_files = sorted(ann_dir.glob("*.xml"))
    annotated = {x.stem for x in ann_dir.glob("*.xml")}
    images = find_images(img_dir) if img_dir.is_dir() else []
    by_stem = {p.stem: p for p in images}
    orphans = sorted(p.name for p in images if p.stem not in annotated)
    if orphans:
        index.notes.append(
            f"{len(orphans)} images in {img_dir} have no annotation file and are not used (e.g. {orphans[:3]})"
        )

    parsed: list[tuple[Path, ET.Element | None]] = []
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
            files_of: dict[str, list[str]] = {}
            for x in sorted(ann_dir.glob("*.xml")):
                try:
                    names = {_text(o, "name") or "" for o in ET.parse(x).getroot().iter("object")}
                except (ET.ParseError, OSError):
                    continue
                for n in names - {""}:
                    files_of.setdefault(n, []).append(x.name)
            class_names = sorted(files_of)
            by_key: dict[str, list[str]] = {}
            for n in class_names:
                by_key.setdefault(class_key(n), []).append(n)  # as --classes and the serve API match names
            for same in (v for v in by_key.values() if len(v) > 1):
                index.notes.append(
                    f"class names {same} differ only in case, spaces or '_' and count as {len(same)} classes: rename"
                    f" them in the xml files, or pin the list in {root / 'label_list.txt'}"
                )
            rare = [n for n, files in files_of.items() if len(files) == 1 and len(annotated) >= 20]
            for n in sorted(rare):
                index.notes.append(
                    f"class {n!r} appears in one file only ({files_of[n][0]}): a typo? Pin the class list in "
                    f"{root / 'label_list.txt'} (one name per line) and other names are reported as unknown"
                )
    if not class_names:
        raise DataError(f"{root}: no object classes found")
    index.class_names = list(class_names)
    label_of = {n: i for i, n in enumerate(class_names)}

    renamed: list[str] = []
    difficult_files = 0
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
        boxes, labels, difficult = [], [], []
        for k, obj in enumerate(node.iter("object")):
            name = _text(obj, "name")
            if name not in label_of:
                index.unknown_classes[name or ""] += 1
                index.drop("unknown class", f"{x}: object {k} has class {name!r} not in {_listed(class_names)}")
                continue
            bb = obj.find("bndbox")
            texts = {t: _text(bb, t) for t in ("xmin", "ymin", "xmax", "ymax")} if bb is not None else {}
            bad = [t for t, v in texts.items() if not _is_number(v)]
            if bb is None or bad:  # a message that says which tag, not 'non-finite coordinates [nan, ...]'
                what = (
                    "no <bndbox>"
                    if bb is None
                    else ", ".join(f"<{t}> {texts[t]!r}" if texts[t] else f"no <{t}>" for t in bad)
                )
                index.drop(
                    "malformed bbox", f"{x}: object {k} ({name}): {what}; a box needs numeric xmin/ymin/xmax/ymax"
                )
                continue
            coords = [float(texts[t]) for t in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[arg-type]
            boxes.append(coords)
            labels.append(label_of[name])
            difficult.append(_text(obj, "difficult") in ("1", "true", "True"))
        hard = np.array(difficult, dtype=bool)
        all_boxes, all_labels = np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(labels, dtype=np.int64)
        arr, lab = sanitize_boxes(all_boxes[~hard], all_labels[~hard], w, h, index, str(x))
        ignore, ignore_lab = sanitize_boxes(all_boxes[hard], all_labels[hard], w, h, index, f"{x} (difficult)")
        difficult_files += int(hard.any())
        img_path = img_dir / filename
        if not img_path.is_file():  # <filename> names another extension or another name: match the name stem
            found = by_stem.get(x.stem) or by_stem.get(Path(filename).stem)
            if found is not None:
                renamed.append(f"{x.name}: {filename} -> {found.name}")
                img_path = found
        index.records.append(ImageRecord(img_path, arr, lab, image_id, w, h, ignore, ignore_lab))
    n_difficult = sum(len(r.ignore_labels) for r in index.records)
    if n_difficult:
        index.notes.append(
            f"{n_difficult} objects marked <difficult>1 in {difficult_files} files are ignored, as the VOC protocol "
            "has it: not training targets, and a detection on one counts as neither hit nor miss in scoring"
        )
    if renamed:
        index.notes.append(
            f"{len(renamed)} annotations name an image file that is not in {img_dir}; the image with the "
            f"annotation's name (any image extension) was used, e.g. {renamed[:3]}"
        )
    if index.unknown_classes:
        counts = ", ".join(f"{n!r} ({c})" for n, c in index.unknown_classes.most_common(10))
        index.notes.append(
            f"{sum(index.unknown_classes.values())} objects of classes not in the class list "
            f"({_listed(class_names)}) were left out: {counts}"
        )
    return index


def _listed(names: list[str], first: int = 10) -> str:
    """A class list for a message: ``['cell', 'rbc']``, or its first ``first`` names and the count."""
    return str(names) if len(names) <= first else f"[{', '.join(map(repr, names[:first]))}, ...] ({len(names)} in all)"
