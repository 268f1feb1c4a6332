"""YOLO txt labels (``class cx cy w h`` normalised per line) with a ``data.yaml`` or an images folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rtdetr.config_io import yaml_error_text
from rtdetr.data.records import DataError, DatasetIndex, ImageRecord, find_images, image_file_size, sanitize_boxes

__all__ = ["label_dir_for", "listed_images", "load_yolo", "read_data_yaml"]


def _yaml_with_names(folders: set[Path]) -> Path | None:
    """A YAML file in ``folders`` that reads as a YOLO data.yaml (it has ``names``), if there is one."""
    for f in sorted(y for d in folders for y in [*d.glob("*.yaml"), *d.glob("*.yml")]):
        try:
            read_data_yaml(f)
        except DataError:
            continue
        return f
    return None


def read_data_yaml(path: str | Path) -> dict[str, Any]:
    """``data.yaml`` with ``path`` (optional root), ``train``/``val`` (folders) and ``names`` (list or dict)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(f"{p}: {yaml_error_text(e)}") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e})") from None
    if not isinstance(data, dict) or "names" not in data:
        raise DataError(f"{p}: a YOLO data.yaml needs a 'names' list or mapping")
    names = data["names"]
    if isinstance(names, dict):
        try:
            by_id = {int(k): v for k, v in names.items()}  # keys written as 0 or '0'
        except (TypeError, ValueError):
            raise DataError(f"{p}: 'names' keys must be integers") from None
        keys = sorted(by_id)
        if keys != list(range(len(keys))) or len(by_id) != len(names):
            raise DataError(f"{p}: 'names' ids must be 0..N-1 once each, got {sorted(names, key=str)[:10]}")
        data["names"] = [str(by_id[k]) for k in keys]
    elif isinstance(names, list):
        data["names"] = [str(n) for n in names]
    else:
        raise DataError(f"{p}: 'names' must be a list or mapping")
    nc = data.get("nc")
    if nc is not None and nc != len(data["names"]):
        raise DataError(f"{p}: 'nc' is {nc} but 'names' has {len(data['names'])} classes")
    return data


def _split_entry(entry: Any, root: Path, what: str) -> Path:
    """One entry of a data.yaml split: a folder or ``.txt`` list, relative to the dataset root. One that is not
    there is also tried as ``<root>/<its name>`` (a folder written with the upstream layout) and, written as
    ``../x``, as ``<root>/x``: Roboflow's YOLO exports say ``train: ../train/images`` in a data.yaml that sits in
    the dataset root (Ultralytics reads them so too)."""
    if not isinstance(entry, str) or not entry.strip():
        raise DataError(f"{what} must be a folder, a .txt list of images or a list of these; got {entry!r}")
    p = Path(entry)
    if p.is_absolute():
        return p
    for cand in (root / p, *([root / entry[3:]] if entry.startswith(("../", "..\\")) else []), root / p.name):
        if cand.exists():
            return cand
    return root / p


def listed_images(listing: Path, root: Path) -> list[Path]:
    """The images a ``.txt`` list names, one per line; a relative path is read against the list's folder, else
    the dataset root (the first where it exists)."""
    out = []
    for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        if not p.is_absolute():
            p = next((c for c in (listing.parent / p, root / p) if c.exists()), listing.parent / p)
        out.append(p)
    return out


def _label_file(image: Path) -> Path:
    """An image's label file: ``.../images/x/a.jpg`` -> ``.../labels/x/a.txt`` (Ultralytics' rule), else beside it
    (``a.txt``, as darknet keeps them) where that exists, else in the labels folder :func:`label_dir_for` finds."""
    parts = image.parts
    if "images" in parts[:-1]:
        i = len(parts) - 2 - parts[-2::-1].index("images")
        cand = Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt")
        if cand.parent.is_dir():
            return cand
    beside = image.with_suffix(".txt")
    if beside.is_file():
        return beside
    try:
        return label_dir_for(image.parent) / f"{image.stem}.txt"
    except DataError:
        return beside


def label_dir_for(image_dir: Path) -> Path:
    """YOLO convention: ``.../images/<split>`` -> ``.../labels/<split>``; else ``<parent>/labels/<name>``,
    ``<folder>/labels`` or ``<parent>/labels``; else the folder itself where label files lie beside the images
    (darknet's layout, CVAT's YOLO 1.1 export)."""
    parts = list(image_dir.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        cand = Path(*parts[:i], "labels", *parts[i + 1 :])
        if cand.is_dir():
            return cand
    for cand in (image_dir.parent / "labels" / image_dir.name, image_dir / "labels", image_dir.parent / "labels"):
        if cand.is_dir():
            return cand
    if any(p.with_suffix(".txt").is_file() for p in find_images(image_dir)):
        return image_dir
    raise DataError(
        f"{image_dir}: no YOLO labels folder found (tried images->labels and <parent>/labels/{image_dir.name})"
    )


def load_yolo(
    source: str | Path, split: str = "train", names: list[str] | None = None, fallback_names: list[str] | None = None
) -> DatasetIndex:
    """Parse a YOLO dataset from a ``data.yaml`` (``split`` selects ``train``/``val``/``test``) or an images folder.

    A split entry of the yaml is a folder of images, a ``.txt`` list of image paths (one per line, relative to the
    list's folder or the dataset root) or a list of these, as in Ultralytics. Labels are found by the
    ``images`` -> ``labels`` convention. Images without a label file are background images. Bad lines (wrong field
    count, non-numbers, class ids out of range) are dropped and reported as ``file:line``. ``names`` replaces
    the names found beside the images (a data.yaml's own win); ``fallback_names`` is used only where none are
    found (a validation images folder takes its training set's names, with a note).
    """
    src = Path(source)
    if src.suffix in (".yaml", ".yml"):
        data = read_data_yaml(src)
        names = data["names"]
        root = Path(data.get("path") or ".")
        root = root if root.is_absolute() else (src.parent / root)
        if split not in data:
            raise DataError(f"{src}: no '{split}' entry")
        entries = data[split] if isinstance(data[split], list) else [data[split]]
        if not entries:
            raise DataError(f"{src}: '{split}' lists no folder or .txt list of images")
        sources = [_split_entry(e, root, f"{src}: '{split}'") for e in entries]
        moved = [f"{e} -> {p}" for e, p in zip(entries, sources) if isinstance(e, str) and p != root / e]
        origin = f"{src}: '{split}' is "  # which yaml entry a folder that is not there came from
    else:
        sources, root, moved, origin = [src], src.parent, [], ""
    pairs: list[tuple[Path, Path]] = []  # (image, its label file)
    label_dirs: list[Path] = []
    for where in sources:
        if where.is_file() and where.suffix.lower() == ".txt":
            pairs += [(img, _label_file(img)) for img in listed_images(where, root)]
        elif where.is_dir():
            label_dirs.append(label_dir_for(where))
            pairs += [(img, label_dirs[-1] / f"{img.stem}.txt") for img in find_images(where)]
        else:
            raise DataError(f"{origin}{where}: image folder (or .txt list of images) not found")
    image_dir = sources[0]
    label_dir = label_dirs[0] if label_dirs else (pairs[0][1].parent if pairs else image_dir.parent)
    looked = list(dict.fromkeys([  # Label Studio writes classes.txt beside images/ and labels/, CVAT obj.names
        label_dir.parent.parent / "data.yaml", image_dir.parent / "data.yaml", label_dir / "classes.txt",
        label_dir.parent / "classes.txt", image_dir.parent / "obj.names", image_dir / "obj.names",
    ]))  # fmt: skip
    if names is None:
        for cand in looked:
            if cand.is_file():
                names = read_data_yaml(cand)["names"] if cand.suffix == ".yaml" else cand.read_text().split("\n")
                names = [n.strip() for n in names if n.strip()]
                break
    fallback = not names and bool(fallback_names)
    if fallback:
        names = fallback_names
    if not names:
        named = _yaml_with_names({c.parent for c in looked} - {label_dir})  # e.g. coco128's yolo_classes.yaml
        dirs_of: dict[str, list[str]] = {}
        for c in looked:
            dirs_of.setdefault(c.name, []).append(str(c.parent))
        tried = "; ".join(f"no {name} in {' or '.join(dirs)}" for name, dirs in dirs_of.items())
        raise DataError(
            f"{image_dir}: class names unknown ({tried}); pass a data.yaml"
            f" with 'names'{f' ({named} has them)' if named else ''}, or write the names one per line, in class-id"
            f" order, to {label_dir / 'classes.txt'}"
        )
    index = DatasetIndex([], list(names), "yolo", str(src))
    if fallback:
        index.notes.append(f"{image_dir}: no class names beside the images; the training set's {len(names)} are used")
    if moved:
        index.notes.append(f"{src}: '{split}' names a folder that is not there; read {', '.join(moved)} instead")
    polygons = scored = 0
    for image_id, (img_path, label_path) in enumerate(pairs):
        boxes, labels, n_polygons, n_scored = _read_labels(label_path, len(names), index)
        polygons, scored = polygons + n_polygons, scored + n_scored
        try:
            w, h = image_file_size(img_path)
        except OSError as e:
            index.drop("unreadable image", f"{img_path}: cannot read image header ({e})")
            continue
        with np.errstate(invalid="ignore", over="ignore"):  # inf/nan in a label file: dropped (and named) below
            xyxy = np.stack(
                [
                    (boxes[:, 0] - boxes[:, 2] / 2) * w,
                    (boxes[:, 1] - boxes[:, 3] / 2) * h,
                    (boxes[:, 0] + boxes[:, 2] / 2) * w,
                    (boxes[:, 1] + boxes[:, 3] / 2) * h,
                ],
                1,
            )
        xyxy, labels = sanitize_boxes(xyxy, labels, w, h, index, str(label_path))
        index.records.append(ImageRecord(img_path, xyxy, labels, image_id, w, h))
    if not index.records:
        raise DataError(f"{image_dir}: no images found")
    if polygons:
        index.notes.append(f"{label_dir}: {polygons} polygon (segmentation) labels are read as their bounding boxes")
    if scored:
        index.notes.append(
            f"{label_dir}: {scored} label lines carry a sixth column, a score (predictions saved with --save-conf):"
            " read as boxes, the score ignored"
        )
    return index


def _read_labels(path: Path, num_classes: int, index: DatasetIndex) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Boxes (normalised cx cy w h), labels, how many lines were polygons turned into boxes and how many carried
    a score as a sixth column (ignored)."""
    rows: list[list[float]] = []
    labels: list[int] = []
    polygons = scored = 0
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            index.drop("unreadable label file", f"{path}: cannot read ({e})")
            text = ""
        for n, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}:{n}"
            polygon = len(fields) >= 7 and len(fields) % 2 == 1  # segmentation labels: class x1 y1 x2 y2 x3 y3 ...
            with_score = len(fields) == 6  # class cx cy w h score: saved predictions (pseudo-labels)
            if len(fields) != 5 and not polygon and not with_score:
                index.drop(
                    "malformed label line",
                    f"{where}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...' (or 'class cx cy w h "
                    f"score'), got {len(fields)} fields",
                )
                continue
            try:
                cls_f = float(fields[0])
                vals = [float(v) for v in fields[1:]]
            except ValueError:
                index.drop("malformed label line", f"{where}: non-numeric value in {line.strip()!r}")
                continue
            if with_score:  # a number, read and left out
                vals, scored = vals[:4], scored + 1
            if polygon:  # its bounding box, in the same normalised cx cy w h
                xs, ys = vals[0::2], vals[1::2]
                vals = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
            if not math.isfinite(cls_f) or cls_f != int(cls_f) or not 0 <= int(cls_f) < num_classes:
                index.drop("class id out of range", f"{where}: class {fields[0]} not in 0..{num_classes - 1}")
                continue
            rows.append(vals)
            labels.append(int(cls_f))
            polygons += polygon
    return np.array(rows, dtype=np.float64).reshape(-1, 4), np.array(labels, dtype=np.int64), polygons, scored
