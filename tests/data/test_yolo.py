from pathlib import Path

import numpy as np
import pytest

from rtdetr.data import DataError, load_index
from rtdetr.data.yolo import load_yolo


def test_yolo_data_yaml_and_bad_lines(yolo_dir: Path) -> None:
    idx = load_yolo(yolo_dir / "data.yaml", "train")
    assert idx.class_names == ["car", "bus"]
    a = idx.records[0]
    assert np.allclose(a.boxes, [[40, 15, 60, 35], [20, 10, 30, 15]])
    assert len(idx.records[2].labels) == 0  # no label file: background image
    assert idx.dropped == {"class id out of range": 2, "malformed label line": 2}
    assert any(p.endswith("b.txt:1: class 5 not in 0..1") for p in idx.problems)
    assert any("b.txt:2: expected 'class cx cy w h' or 'class x1 y1" in p and "got 3 fields" in p for p in idx.problems)


def test_roboflow_yolo_export_with_parent_relative_splits(tmp_path: Path) -> None:
    """Roboflow's YOLO export: ``<root>/{train,valid,test}/{images,labels}`` and a data.yaml in the root whose
    splits say ``../train/images``. Read as ``<root>/train/images`` (as Ultralytics does), with a note; the
    folder itself and ``--split val`` work too, and a split that really is one level up is taken as written."""
    from tests.data.conftest import write_image

    root = tmp_path / "export"
    for split, n in (("train", 3), ("valid", 2), ("test", 1)):
        for i in range(n):
            write_image(root / split / "images" / f"{split}{i}.jpg", (100, 50))
            (root / split / "labels").mkdir(exist_ok=True)
            (root / split / "labels" / f"{split}{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.2 0.4\n")
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\nnames: ['fish', 'jellyfish']\n"
        "\nroboflow:\n  workspace: w\n  project: p\n  version: 1\n"
    )
    idx = load_yolo(root / "data.yaml", "train")
    assert [r.path.name for r in idx.records] == ["train0.jpg", "train1.jpg", "train2.jpg"]
    assert idx.records[1].labels.tolist() == [1] and idx.class_names == ["fish", "jellyfish"]
    assert any("'train' names a folder that is not there; read ../train/images ->" in n for n in idx.notes)
    assert [r.path.name for r in load_index(root, "val").records] == ["valid0.jpg", "valid1.jpg"]
    assert len(load_index(root, "test").records) == 1
    for i in range(2):  # the yaml's own reading, where it holds, wins
        write_image(tmp_path / "train" / "images" / f"up{i}.jpg", (100, 50))
    (tmp_path / "train" / "labels").mkdir()
    up = load_yolo(root / "data.yaml", "train")
    assert [r.path.name for r in up.records] == ["up0.jpg", "up1.jpg"] and not up.notes


def test_label_studio_and_cvat_yolo_exports(tmp_path: Path) -> None:
    """Label Studio's YOLO export (``images/``, ``labels/``, ``classes.txt`` in the root, no splits) loads from the
    root or its images folder; CVAT's YOLO 1.1 (darknet) export keeps labels beside the images in
    ``obj_train_data/`` and the names in ``obj.names``: its image folder loads, and its root says to give that."""
    from tests.data.conftest import write_image

    ls = tmp_path / "label_studio"
    (ls / "labels").mkdir(parents=True)
    for i in range(3):
        write_image(ls / "images" / f"{i}.jpg", (100, 50))
        (ls / "labels" / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.2 0.4\n")
    (ls / "classes.txt").write_text("boat\nbuoy\n")
    (ls / "notes.json").write_text("{}")
    for source in (ls, ls / "images"):
        idx = load_index(source)
        assert idx.format == "yolo" and idx.class_names == ["boat", "buoy"] and len(idx.records) == 3
        assert idx.records[1].labels.tolist() == [1] and np.allclose(idx.records[1].boxes, [[40, 15, 60, 35]])

    cvat = tmp_path / "cvat"
    (cvat / "obj_train_data").mkdir(parents=True)
    for i in range(2):
        write_image(cvat / "obj_train_data" / f"f{i}.png", (100, 50))
        (cvat / "obj_train_data" / f"f{i}.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (cvat / "obj.names").write_text("boat\nbuoy\n")
    (cvat / "obj.data").write_text("classes = 2\ntrain = data/train.txt\nnames = data/obj.names\n")
    idx = load_index(cvat / "obj_train_data")
    assert idx.class_names == ["boat", "buoy"] and [r.labels.tolist() for r in idx.records] == [[1], [1]]
    with pytest.raises(DataError, match=r"cvat: a darknet \(CVAT YOLO 1.1\) export: give its image folder, .*obj_"):
        load_index(cvat)


def test_yolo_polygon_labels_become_their_boxes(yolo_dir: Path) -> None:
    """Segmentation-format lines (class and 3+ points) count as their bounding boxes; an even count of fields or
    two points is still malformed."""
    labels = yolo_dir / "labels" / "train"
    (labels / "c.txt").write_text(
        "1 0.1 0.2 0.5 0.3 0.3 0.6 0.2 0.5\n0 0.1 0.1 0.2 0.2 0.3 0.3 0.4\n0 0.1 0.1 0.2 0.2\n"
    )
    idx = load_yolo(yolo_dir / "data.yaml")
    c = idx.records[2]
    assert c.labels.tolist() == [1, 0]  # the polygon and the plain box; the 7-value line is dropped
    assert np.allclose(c.boxes[0], [10, 10, 50, 30])  # x 0.1..0.5 of 100, y 0.2..0.6 of 50
    assert np.allclose(c.boxes[1], [0, 0, 20, 10])  # the 5-field line: cx 0.1 w 0.2 -> 0..20
    assert any("c.txt:2: expected" in p and "got 8 fields" in p for p in idx.problems)
    assert any("polygon (segmentation) labels are read as their bounding boxes" in n for n in idx.notes)


def test_yolo_labels_of_a_phone_photo_are_read_in_the_picture_as_shown(
    yolo_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """A photo stored turned with EXIF orientation 6 (shown 100x50, stored 50x100): its normalised YOLO labels are
    of the picture as shown (Ultralytics' rule), so its size and boxes are the shown ones, and check-data reports
    no size mismatch (it used to say the sides were swapped against an "annotation" that was our own header read)."""
    from PIL import Image

    from rtdetr.cli import main

    stored = Image.new("RGB", (50, 100), (200, 30, 30))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(yolo_dir / "images" / "train" / "a.jpg", exif=exif)
    rec = next(r for r in load_index(yolo_dir / "data.yaml").records if r.path.name == "a.jpg")
    assert (rec.width, rec.height) == (100, 50)
    assert rec.boxes[0].tolist() == pytest.approx([40, 15, 60, 35])  # 0 0.5 0.5 0.2 0.4 on 100x50
    main(["check-data", str(yolo_dir / "data.yaml")])
    assert "size differs" not in capsys.readouterr().out


def test_yolo_without_names_says_where_it_looked(tmp_path: Path) -> None:
    """The error named no place to put the names; now it lists the files it looked for, and classes.txt there works."""
    from tests.data.conftest import write_image

    for d in ("images/train", "labels/train"):
        (tmp_path / d).mkdir(parents=True)
    write_image(tmp_path / "images" / "train" / "a.jpg", (40, 30))
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    looked = r"class names unknown \(no data\.yaml in \S+ or \S+images; no classes\.txt in .*\)"
    with pytest.raises(DataError, match=looked) as e:
        load_index(tmp_path)
    assert " has them)" not in str(e.value)
    # a YAML with names under another name (coco128 ships yolo_classes.yaml) is pointed at; one without is not
    (tmp_path / "notes.yaml").write_text("author: me\n")
    (tmp_path / "my_classes.yml").write_text("names: [cat, dog]\n")
    with pytest.raises(DataError, match=r"pass a data.yaml with 'names' \(\S*my_classes.yml has them\), or write"):
        load_index(tmp_path)
    (tmp_path / "my_classes.yml").unlink()
    (tmp_path / "labels" / "train" / "classes.txt").write_text("cat\ndog\n")
    idx = load_index(tmp_path)
    assert idx.class_names == ["cat", "dog"] and idx.records[0].labels.tolist() == [1]
    # the split's images folder itself (it was 'cannot tell the dataset format')
    assert load_index(tmp_path / "images" / "train").records[0].labels.tolist() == [1]


def test_yolo_yaml_splits_as_lists_and_txt_files(tmp_path: Path) -> None:
    """Ultralytics' data.yaml forms: a split as a list of folders (it was a TypeError traceback), as a .txt list of
    image paths ('./' relative to the list, or to the dataset root; it was 'image folder not found'), and images
    whose labels sit beside them (darknet)."""
    from tests.data.conftest import write_image

    for sub, n in (("a", 2), ("b", 1)):
        (tmp_path / "images" / sub).mkdir(parents=True)
        (tmp_path / "labels" / sub).mkdir(parents=True)
        for i in range(n):
            write_image(tmp_path / "images" / sub / f"{sub}{i}.jpg", (40, 30))
            (tmp_path / "labels" / sub / f"{sub}{i}.txt").write_text(f"{i} 0.5 0.5 0.2 0.2\n")
    (tmp_path / "flat").mkdir()
    write_image(tmp_path / "flat" / "d.jpg", (40, 30))
    (tmp_path / "flat" / "d.txt").write_text("1 0.5 0.5 0.4 0.4\n")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "val.txt").write_text("# val images\n../images/a/a1.jpg\nimages/b/b0.jpg\n\n../flat/d.jpg\n")
    (tmp_path / "data.yaml").write_text(
        "path: .\ntrain: [images/a, images/b]\nval: lists/val.txt\ntest: 5\nextra: [images/a, gone]\nnone: []\n"
        "names: [x, y]\n"
    )
    train = load_index(tmp_path / "data.yaml", "train")
    assert sorted(r.path.name for r in train.records) == ["a0.jpg", "a1.jpg", "b0.jpg"]
    assert sorted(int(r.labels[0]) for r in train.records) == [0, 0, 1]
    val = load_index(tmp_path / "data.yaml", "val")
    assert [(r.path.name, r.labels.tolist()) for r in val.records] == [("a1.jpg", [1]), ("b0.jpg", [0]), ("d.jpg", [1])]
    with pytest.raises(DataError, match="'test' must be a folder, a .txt list of images or a list of these; got 5"):
        load_index(tmp_path / "data.yaml", "test")
    with pytest.raises(DataError, match=r"gone: image folder \(or .txt list of images\) not found"):
        load_index(tmp_path / "data.yaml", "extra")
    with pytest.raises(DataError, match="'none' lists no folder or .txt list of images"):
        load_index(tmp_path / "data.yaml", "none")


def test_data_yaml_names_and_nc(tmp_path: Path) -> None:
    """names as a mapping with quoted ids ('0': a) was a KeyError traceback; an 'nc' that disagrees with the names
    was ignored (the class count then came from the names alone)."""
    from rtdetr.data.yolo import read_data_yaml

    y = tmp_path / "data.yaml"
    y.write_text("names:\n  '1': b\n  '0': a\n")
    assert read_data_yaml(y)["names"] == ["a", "b"]
    y.write_text("nc: 2\nnames: {0: a, 1: b}\n")
    assert read_data_yaml(y)["names"] == ["a", "b"]
    y.write_text("names: [a, b\n")  # the recipe fix's twin: PyYAML's multi-line dump became one line
    with pytest.raises(DataError, match=r"data.yaml: not valid YAML at line 2, column 1: expected ',' or ']'") as e:
        read_data_yaml(y)
    assert "\n" not in str(e.value)
    for text, message in [
        ("nc: 3\nnames: [a, b]\n", "'nc' is 3 but 'names' has 2 classes"),
        ("names: {0: a, '0': b}\n", "'names' ids must be 0..N-1 once each"),
        ("names: {0: a, 2: b}\n", "'names' ids must be 0..N-1 once each"),
        ("names: {x: a}\n", "'names' keys must be integers"),
    ]:
        y.write_text(text)
        with pytest.raises(DataError, match=message):
            read_data_yaml(y)
