"""Find the dataset format from a path: a COCO json, a YOLO data.yaml or images folder, or a VOC folder."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

from rtdetr.config import ConfigError, DataConfig
from rtdetr.data.coco import load_coco
from rtdetr.data.records import SPLIT_FOLDERS, DataError, DatasetIndex, find_images
from rtdetr.data.voc import has_xml, load_voc
from rtdetr.data.yolo import label_dir_for, load_yolo, read_data_yaml

log = logging.getLogger(__name__)

#: the split a file name speaks of (``instances_train2017``: train; ``valid``: val)
_SPLIT_WORD = re.compile(r"train|val|test")

__all__ = ["DatasetFormat", "detect_format", "load_index", "load_run_sets", "own_val_split"]

DatasetFormat = Literal["auto", "coco", "yolo", "voc"]


def detect_format(path: str | Path) -> Literal["coco", "yolo", "voc"]:
    """Guess the format of ``path``; raises :class:`DataError` with what was expected."""
    p = Path(path)
    if not p.exists():
        hint = ""
        if _SPLIT_WORD.search(p.name) and p.parent.is_dir() and (p.parent / "Annotations").is_dir():
            hint = f" ({p.parent} is a VOC folder: give that; the split (train, val) picks ImageSets/Main/<split>.txt)"
        raise DataError(f"{p}: no such file or folder{hint}")
    if p.is_file():
        if p.suffix == ".json":
            return "coco"
        if p.suffix in (".yaml", ".yml"):
            return "yolo"
    else:
        if (p / "Annotations").is_dir():
            return "voc"
        if (p / "annotations").is_dir() and list((p / "annotations").glob("*.json")):
            return "coco"
        if (p / "annotations").is_dir() and list((p / "annotations").glob("*.xml")):
            return "voc"  # the lowercase annotations/ + images/ export layout
        if (p / "data.yaml").is_file() or (p / "labels").is_dir() or (p.parent / "labels" / p.name).is_dir():
            return "yolo"
        if find_images(p) and _has_yolo_labels(p):  # an images folder: .../images/<split> beside .../labels/<split>
            return "yolo"
        if _folder_json(p) or any(_folder_json(p / s) for s in ("train", "valid", "val", "test")):
            return "coco"  # a json beside the images, per split folder (Roboflow's COCO export)
        if any(has_xml(d) for d in (p, p / "train", p / "valid", p / "val", p / "test")):
            return "voc"  # xml files beside the images (labelImg's default), per split folder (Roboflow's VOC export)
    darknet = sorted(d.name for d in p.glob("obj_*_data") if d.is_dir()) if (p / "obj.data").is_file() else []
    if darknet:
        raise DataError(f"{p}: a darknet (CVAT YOLO 1.1) export: give its image folder, {p / darknet[0]}")
    raise DataError(
        f"{p}: cannot tell the dataset format; expected a COCO .json (or a folder with annotations/*.json), "
        "a YOLO data.yaml (or images/ + labels/ folders), or a VOC folder with Annotations/ and JPEGImages/ "
        "(or annotations/*.xml and images/)"
    )


def _has_yolo_labels(image_dir: Path) -> bool:
    try:
        label_dir_for(image_dir)
    except DataError:
        return False
    return True


def _folder_json(folder: Path) -> Path | None:
    """The COCO json lying directly in ``folder``: ``_annotations.coco.json``, else its only json, else None."""
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.json"))
    named = [f for f in files if f.name == "_annotations.coco.json"]
    return named[0] if named else (files[0] if len(files) == 1 else None)


def _coco_json_for(root: Path, split: str) -> Path:
    """The json of ``split`` under ``root``: in ``annotations/`` (by split name), directly in ``root``, or in the
    split's folder (``<root>/<split>/_annotations.coco.json``, the Roboflow layout; ``val`` also finds ``valid``)."""
    if not (root / "annotations").is_dir():
        found = _folder_json(root)
        for name in SPLIT_FOLDERS.get(split, (split,)):
            found = found or _folder_json(root / name)
        if found is None:
            raise DataError(
                f"{root}: no COCO json for split {split!r} (looked in annotations/, {root.name}/ and "
                f"{'/, '.join(SPLIT_FOLDERS.get(split, (split,)))}/)"
            )
        return found
    files = sorted((root / "annotations").glob("*.json"))
    matching = [f for f in files if split in f.stem]
    if len(matching) >= 1:
        return sorted(matching, key=lambda f: (not f.stem.startswith("instances"), len(f.stem)))[0]
    if len(files) == 1:
        named = set(_SPLIT_WORD.findall(files[0].stem.lower())) - set(_SPLIT_WORD.findall(split.lower()))
        if named:  # e.g. only instances_train2017.json when asked for 'val': evaluating on the training images
            log.warning(
                "%s/annotations: no json for split %r; using the only one, %s, whose name says %s",
                root, split, files[0].name, " / ".join(sorted(named)),
            )  # fmt: skip
        return files[0]
    raise DataError(f"{root}/annotations: no json for split {split!r} among {[f.name for f in files]}")


def load_index(
    path: str | Path,
    split: str = "train",
    format: DatasetFormat = "auto",
    image_dir: str | Path | None = None,
    class_names: list[str] | None = None,
    allow_empty: bool = False,
    fallback_names: list[str] | None = None,
) -> DatasetIndex:
    """Parse the dataset at ``path`` (format auto-detected unless given) for ``split``. ``class_names`` fixes a VOC
    set's label order and a YOLO folder's names; ``fallback_names`` names a YOLO folder that has none of its own.

    Raises:
        DataError: the format cannot be told or parsed, or (unless ``allow_empty``, as ``check-data`` does) no
            image is left to use, with the notes and first problems saying why.
    """
    index = _load(Path(path), split, format, class_names, image_dir, fallback_names)
    _drop_missing_files(index)
    if not index.records and not allow_empty:
        why = "; ".join([*index.notes, *index.problems[:3]]) or "no images"
        raise DataError(f"{index.source}: no usable images ({why})")
    return index


def load_run_sets(
    data: DataConfig, train: DatasetIndex | None = None, val: DatasetIndex | None = None
) -> tuple[DatasetIndex, DatasetIndex | None]:
    """A run's training and validation sets from its data settings (sets given are used as they are). An error
    names the setting it comes from: a recipe's ``data.val`` left in place by ``--data`` shows as such."""
    if train is None:
        if not data.train:
            raise ConfigError("data.train is not set: give a COCO json, YOLO data.yaml or VOC folder")
        train = _load_setting("data.train", data.train, data.train_split, data.format)
    if val is None and data.val:
        names = train.class_names if train.format == "voc" else None  # VOC: the train set's order
        val = _load_setting("data.val", data.val, data.val_split, data.format, names, _yolo_names(train))
    elif val is None and data.val is None and data.auto_val and data.train:
        val = own_val_split(data, train)
    if val is not None and val.class_names != train.class_names:
        raise ConfigError(f"train and val class names differ: {train.class_names[:5]}... vs {val.class_names[:5]}...")
    return train, val


def own_val_split(data: DataConfig, train: DatasetIndex) -> DatasetIndex | None:
    """The ``val_split`` of ``data.train`` itself, when it holds images the training split does not (a YOLO
    data.yaml's ``val``, VOC's ``ImageSets/Main/val.txt`` or name-hash split, a Roboflow ``valid/`` folder, a COCO
    ``annotations/*val*.json``); None where the source has no such split or it is the training images again."""
    quiet = log.level
    log.setLevel(logging.ERROR)  # "no json for split 'val'; using the only one": not a choice made for the user
    failed: Exception | None = None
    try:
        names = train.class_names if train.format == "voc" else None
        val = load_index(data.train, data.val_split, data.format, class_names=names, fallback_names=_yolo_names(train))
    except (DataError, OSError) as e:
        failed = e
    finally:
        log.setLevel(quiet)
    if failed is not None:
        if _yaml_names_split(data.train, data.val_split):  # asked for by the user's own data.yaml: say why not
            log.warning(
                "%s names a '%s' split that cannot be read (%s): training without validation (--val PATH gives one)",
                data.train,
                data.val_split,
                failed,
            )
        return None
    train_paths = {r.path.resolve() for r in train.records}
    if val.class_names != train.class_names:
        return None
    if {r.path.resolve() for r in val.records} <= train_paths:
        if _yaml_names_split(data.train, data.val_split):
            log.warning(  # coco128's yaml style: the user named it, so say why it is not used, at the start
                "%s: its '%s' split is the training images again: training without validation (an AP on them would "
                "measure fit, not detection; --val %s validates on them anyway)",
                data.train,
                data.val_split,
                data.train,
            )
        return None
    shared = sum(r.path.resolve() in train_paths for r in val.records)
    val.notes.insert(
        0,
        f"the {data.val_split!r} split of the training source, {len(val.records)} images (data.val is not set; "
        f"--val PATH chooses another, data.auto_val=false trains without)"
        + (f"; {shared} of them are training images too" if shared else ""),
    )
    return val


def _yaml_names_split(path: str, split: str) -> bool:
    """Whether ``path`` is a YOLO data.yaml with a ``split`` entry."""
    if Path(path).suffix.lower() not in (".yaml", ".yml"):
        return False
    try:
        return split in read_data_yaml(path)
    except (DataError, OSError):
        return False


def _yolo_names(train: DatasetIndex) -> list[str] | None:
    """The names a YOLO validation folder without its own takes: its YOLO training set's (the same class ids)."""
    return train.class_names if train.format == "yolo" else None


def _load_setting(
    setting: str,
    path: str,
    split: str,
    format: DatasetFormat,
    class_names: list[str] | None = None,
    fallback_names: list[str] | None = None,
) -> DatasetIndex:
    try:
        return load_index(path, split, format, class_names=class_names, fallback_names=fallback_names)
    except DataError as e:
        hint = " (--val PATH validates on another set)" if setting == "data.val" else ""
        raise DataError(f"{setting}: {e}{hint}") from None


def _drop_missing_files(index: DatasetIndex) -> None:
    """Drop (and list) the images whose file is not there, with one note saying which folder the annotation
    names were read against (a wrong one used to pass the load, then training skipped every image as unreadable)."""
    missing = [r for r in index.records if not r.path.is_file()]
    if not missing:
        return
    for r in missing:
        index.drop("missing image file", f"{index.source}: image id {r.image_id}: no file {r.path}")
    folders = sorted({str(r.path.parent) for r in missing})
    index.notes.append(
        f"{len(missing)} of {len(index.records)} images are missing, looked for in {', '.join(folders[:3])}"
        + (" (a COCO json's file_name is read relative to <root>/<split>, <root>/images/<split>, <root>/images,"
           " the root or the json's folder, the first that holds the file)" if index.format == "coco" else "")
    )  # fmt: skip
    gone = {id(r) for r in missing}
    index.records = [r for r in index.records if id(r) not in gone]


def _load(
    p: Path,
    split: str,
    format: DatasetFormat,
    class_names: list[str] | None,
    image_dir: str | Path | None,
    fallback_names: list[str] | None = None,
) -> DatasetIndex:
    fmt = detect_format(p) if format == "auto" else format
    if fmt == "coco":
        ann = p if p.is_file() else _coco_json_for(p, split)
        return load_coco(ann, image_dir)
    if fmt == "voc":
        return load_voc(p, split, class_names)
    if p.is_dir() and (p / "data.yaml").is_file():
        return load_yolo(p / "data.yaml", split, class_names, fallback_names)
    if p.is_dir() and not find_images(p):  # a root: its split's images, or (Label Studio) all of images/
        flat = [p / "images"] if (p / "images").is_dir() and find_images(p / "images") else []
        for cand in (p / "images" / split, p / split, *flat):
            if cand.is_dir():
                return load_yolo(cand, split, class_names, fallback_names)
    return load_yolo(p, split, class_names, fallback_names)
