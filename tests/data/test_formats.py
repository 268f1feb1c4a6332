import json
import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from rtdetr.data import DataError, detect_format, load_index
from rtdetr.data.coco import load_coco
from rtdetr.data.voc import load_voc
from rtdetr.data.yolo import load_yolo


def test_coco_remaps_drops_and_reports(coco_dir: Path) -> None:
    idx = load_coco(coco_dir / "annotations" / "instances_train.json")
    assert idx.class_names == ["dog", "cat"] and idx.category_ids == [3, 7]  # sorted by category id
    assert [r.path.name for r in idx.records] == ["1.png", "2.png", "3.png"]
    r1 = idx.records[0]
    assert r1.labels.tolist() == [1, 0]
    assert np.allclose(r1.boxes, [[10, 10, 30, 20], [50, 40, 64, 48]])  # second box clipped to the image
    assert len(idx.records[1].labels) == 0 and len(idx.records[2].labels) == 0  # empty images kept
    assert idx.dropped == {"degenerate box": 1, "unknown category": 1, "unknown image id": 1, "malformed bbox": 1}
    assert any("annotations[3]" in p and "category_id 99" in p for p in idx.problems)


def test_coco_repeated_ids(coco_dir: Path) -> None:
    """A repeated image id is dropped and reported (the first entry keeps the annotations); a category id listed
    twice under one name counts once, under two names it is an error naming both."""
    path = coco_dir / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["images"].append({"id": 1, "file_name": "3.png", "width": 64, "height": 48})
    data["categories"].append({"id": 7, "name": "cat"})
    path.write_text(json.dumps(data))
    idx = load_coco(path)
    assert [r.path.name for r in idx.records] == ["1.png", "2.png", "3.png"] and idx.class_names == ["dog", "cat"]
    assert idx.records[0].labels.tolist() == [1, 0] and idx.dropped["duplicate image id"] == 1
    assert any("images[3] (3.png) repeats id 1 of 1.png" in p for p in idx.problems)
    data["categories"].append({"id": 3, "name": "wolf"})
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="instances_train.json: category id 3 is listed twice, as 'dog' and 'wolf'"):
        load_coco(path)


def test_roboflow_coco_export_layout(coco_dir: Path, tmp_path: Path) -> None:
    """<root>/{train,valid}/_annotations.coco.json beside the images (Roboflow's COCO export): the root with a
    split, the split folder and the json itself all load; ``val`` finds ``valid``."""
    ann = json.loads((coco_dir / "annotations" / "instances_train.json").read_text())
    root = tmp_path / "roboflow"
    for split in ("train", "valid"):
        (root / split).mkdir(parents=True)
        for f in (coco_dir / "images" / "train").iterdir():
            (root / split / f.name).write_bytes(f.read_bytes())
        (root / split / "_annotations.coco.json").write_text(json.dumps(ann))
    assert detect_format(root) == detect_format(root / "train") == "coco"
    for idx in (
        load_index(root, "val"),
        load_index(root / "valid", "val"),
        load_index(root / "train" / "_annotations.coco.json"),
    ):
        assert [r.path.name for r in idx.records] == ["1.png", "2.png", "3.png"]
        assert all(r.path.is_file() for r in idx.records)
    assert load_index(root, "val").records[0].path.parent.name == "valid"
    assert load_index(root, "train").records[0].path.parent.name == "train"
    with pytest.raises(DataError, match="no COCO json for split 'test'"):
        load_index(root, "test")


def test_label_studio_coco_export_file_names(tmp_path: Path) -> None:
    """Label Studio's COCO export: ``result.json`` beside ``images/``, whose file_names say ``images/x.jpg``
    (``images\\x.jpg`` from Windows). They were looked for in ``images/images/``, so every image was missing; an
    upload path that is not there is found by its base name, and said."""
    from tests.data.conftest import write_image

    root = tmp_path / "project"
    names = ["images/a.jpg", "images\\b.jpg", "/data/upload/7/c.jpg"]
    for n in names:
        write_image(root / "images" / n.replace("\\", "/").split("/")[-1], (64, 48))
    images = [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)]
    anns = [{"id": i + 1, "image_id": i, "category_id": 0, "bbox": [4, 4, 20, 10], "area": 200} for i in range(3)]
    data = {"images": images, "annotations": anns, "categories": [{"id": 0, "name": "cup"}], "info": {}}
    (root / "result.json").write_text(json.dumps(data))
    for source in (root, root / "result.json"):
        idx = load_index(source)
        assert [r.path for r in idx.records] == [root / "images" / n for n in ("a.jpg", "b.jpg", "c.jpg")]
        assert not idx.dropped and idx.records[2].labels.tolist() == [0]
        assert any("1 images are not where their file_name says and were found by base name" in n for n in idx.notes)


def test_coco_broken_json_names_file_and_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [1, 2,]')
    with pytest.raises(DataError, match=r"bad.json: invalid JSON at line 1 column"):
        load_coco(bad)
    (tmp_path / "x.json").write_text('{"annotations": []}')
    with pytest.raises(DataError, match="missing or invalid 'images'"):
        load_coco(tmp_path / "x.json")


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


def test_voc_split_classes_and_broken_xml(voc_dir: Path) -> None:
    idx = load_voc(voc_dir, "train")
    assert idx.class_names == ["blob", "cell"]
    assert len(idx.records) == 2
    assert idx.dropped["unparsable annotation"] == 1 and idx.dropped["degenerate box"] == 1
    assert idx.records[1].boxes.tolist() == [[2.0, 5.0, 60.0, 20.0]]


def test_detect_and_load_index(coco_dir: Path, yolo_dir: Path, voc_dir: Path, tmp_path: Path) -> None:
    assert (
        detect_format(coco_dir) == "coco" and detect_format(coco_dir / "annotations" / "instances_train.json") == "coco"
    )
    assert detect_format(yolo_dir / "data.yaml") == "yolo" and detect_format(yolo_dir) == "yolo"
    assert detect_format(voc_dir) == "voc"
    assert load_index(coco_dir, "train").format == "coco"
    assert load_index(yolo_dir, "train").format == "yolo"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="cannot tell the dataset format"):
        detect_format(empty)
    with pytest.raises(DataError, match="no such file"):
        load_index(tmp_path / "nope.json")


def test_coco128_json_and_yolo_agree(shared_datasets: Path) -> None:
    coco = load_index(shared_datasets / "coco128" / "annotations" / "instances_train2017.json")
    yolo = load_index(shared_datasets / "coco128" / "yolo_classes.yaml", "train")
    assert len(coco.records) == len(yolo.records) == 128
    assert coco.num_boxes() == yolo.num_boxes() == 929
    by_name = {r.path.name: r for r in yolo.records}
    for r in coco.records:
        y = by_name[r.path.name]
        assert len(r.boxes) == len(y.boxes)
        if len(r.boxes) == 0:
            continue
        cost = np.abs(r.boxes[:, None] - y.boxes[None]).sum(-1)
        rows, cols = linear_sum_assignment(cost)
        assert cost[rows, cols].max() < 0.01
        assert (r.labels[rows] == y.labels[cols]).all()


def test_bccd_voc(shared_datasets: Path) -> None:
    train = load_index(shared_datasets / "bccd", "train")
    val = load_index(shared_datasets / "bccd", "val")
    assert (len(train.records), len(val.records)) == (205, 87)
    assert train.class_names == val.class_names == ["Platelets", "RBC", "WBC"]
    assert train.dropped["degenerate box"] + val.dropped["degenerate box"] <= 2


def test_check_data_reports(coco_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from rtdetr.cli import main

    (coco_dir / "images" / "train" / "3.png").write_bytes(b"\x89PNG broken")
    assert main(["check-data", str(coco_dir), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "3 (2 readable, 1 unreadable, 2 without boxes)" in out and "3.png" in out
    assert "unknown category: 1" in out


def test_check_data_reports_images_whose_size_differs_from_the_annotation(
    coco_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """Annotated 64x48: image 1 was later saved at half size (boxes scaled, said); image 2 shows 48x64 through its
    EXIF rotation, so the annotation was made on its stored 64x48 pixels (loaded so, said)."""
    from PIL import Image

    from rtdetr.cli import main
    from tests.data.conftest import write_image

    write_image(coco_dir / "images" / "train" / "1.png", size=(32, 24))
    stored = Image.new("RGB", (64, 48), (10, 20, 30))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(coco_dir / "images" / "train" / "2.png", exif=exif)
    main(["check-data", str(coco_dir)])
    out = capsys.readouterr().out
    assert "size differs from annotation (its boxes are scaled to the image, detections scored in its frame): 1" in out
    assert "1.png: 32x24, annotated 64x48\n" in out
    assert "annotated unturned (the stated size is the stored one; loaded without the EXIF rotation to fit): 1" in out
    assert "2.png: stored 64x48, shown 48x64" in out


def test_check_data_finds_a_truncated_jpeg_though_it_decodes_at_a_reduced_scale(
    coco_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    import io

    from PIL import Image

    from rtdetr.cli import main

    buf = io.BytesIO()
    Image.effect_noise((800, 600), 64).convert("RGB").save(buf, "JPEG")
    (coco_dir / "images" / "train" / "2.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert main(["check-data", str(coco_dir), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "unreadable images: 1" in out and "2.png: cannot decode image (image file is truncated" in out


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


def test_synthetic_dataset_is_deterministic(tmp_path: Path) -> None:
    from rtdetr.data.synthetic import make_synthetic_coco

    a = make_synthetic_coco(tmp_path / "a", 4, 2, 64, seed=3)
    b = make_synthetic_coco(tmp_path / "b", 4, 2, 64, seed=3)
    ja, jb = json.loads(a["train"].read_text()), json.loads(b["train"].read_text())
    assert ja["annotations"] == jb["annotations"] and len(ja["images"]) == 4
    assert load_index(a["val"]).num_classes == 4


def test_check_data_states_split_and_refuses_unusable_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The split read is named; a json without 'annotations' is noted; every image missing exits 1 even without
    --strict."""
    from rtdetr.cli import main

    ann = tmp_path / "instances_val.json"
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 32, "height": 32} for i in range(3)]
    ann.write_text(json.dumps({"images": images, "categories": [{"id": 1, "name": "a"}]}))
    assert main(["check-data", str(ann), "--split", "val"]) == 1
    out = capsys.readouterr().out
    assert "(coco, split 'val')" in out and "no 'annotations' list" in out and "NO USABLE IMAGES" in out


def test_broken_pipe_is_quiet(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    """``rtdetr info | head -n 1``: the reader closes the pipe; the command stops quietly with exit 0."""
    import os
    import sys

    from rtdetr.cli import main

    read, write = os.pipe()
    os.close(read)
    saved = os.dup(1)
    os.dup2(write, 1)  # fd 1 is now a pipe nobody reads
    os.close(write)
    try:
        monkeypatch.setattr(sys, "stdout", os.fdopen(os.dup(1), "w"))
        assert main(["info"]) == 0
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert "Broken pipe" not in capfd.readouterr().err


def test_clipped_and_inverted_boxes_are_reported_by_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rtdetr.cli import main
    from tests.data.conftest import write_image

    write_image(tmp_path / "a.jpg", (64, 48))
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [50, 10, 30, 20]},  # reaches past x = 64
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 10, -5, 8]},  # negative width: inverted
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]},
    ]
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}], "annotations": anns,
           "categories": [{"id": 1, "name": "x"}]}  # fmt: skip
    (tmp_path / "instances_train.json").write_text(json.dumps(doc))
    idx = load_index(tmp_path / "instances_train.json")
    assert idx.adjusted["box clipped to the image"] == 1 and idx.dropped["inverted box"] == 1
    assert idx.num_boxes() == 2
    main(["check-data", str(tmp_path / "instances_train.json"), "--no-decode"])
    out = capsys.readouterr().out
    assert "changed while parsing: box clipped to the image: 1" in out and "inverted box: 1" in out
    assert "reaches past the 64x48 image; clipped to [50.0, 10.0, 64.0, 30.0]" in out


def test_rounding_past_the_edge_is_clipped_without_a_report(tmp_path: Path) -> None:
    """YOLO labels whose box reaches past the edge by float rounding (cx - w/2 = -1e-6) used to fill the problem list
    (33 of coco128's 128 label files, 'box [-0.0, 148.96000671386719, ...] reaches past'); half a pixel or more is
    still reported, its numbers to two decimals."""
    from tests.data.conftest import write_image

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    write_image(tmp_path / "images" / "a.jpg", (100, 50))
    lines = [
        "0 0.1499995 0.5 0.300001 0.4",  # x1 = -1e-6 * 100 px, x2 = 30.0001
        "0 0.9 0.5 0.2000004 0.2",  # x2 = 100.00002
        "0 0.5 0.9123 0.2 0.2",  # y2 = 50.615: 0.6 px past
    ]
    (tmp_path / "labels" / "a.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images\nnames: [x]\n")
    idx = load_index(tmp_path / "data.yaml", "train")
    assert idx.adjusted["box clipped to the image"] == 1 and idx.num_boxes() == 3
    (note,) = [p for p in idx.problems if "reaches past" in p]
    assert note.endswith(
        "box [40.0, 40.62, 60.0, 50.62] reaches past the 100x50 image; clipped to [40.0, 40.62, 60.0, 50.0]"
    )
    boxes = idx.records[0].boxes
    assert boxes.min() >= 0 and boxes[:, 2].max() <= 100 and boxes[:, 3].max() <= 50  # all clipped


def test_the_only_json_of_another_split_is_used_with_a_warning(
    coco_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """coco128 holds instances_train2017.json only: 'val' of that folder evaluated on the training images without a
    word. It still loads (a folder with one json is that json) and now says whose split it is."""
    with caplog.at_level("WARNING"):
        idx = load_index(coco_dir, "val")
        assert idx.source.endswith("instances_train.json")
        assert "no json for split 'val'; using the only one, instances_train.json, whose name says train" in caplog.text
        caplog.clear()
        load_index(coco_dir, "train")
        assert caplog.text == ""
    valid = coco_dir / "annotations" / "instances_train.json"
    valid.rename(valid.with_name("instances_valid.json"))
    (coco_dir / "images" / "train").rename(coco_dir / "images" / "valid")
    with caplog.at_level("WARNING"):
        load_index(coco_dir, "val")  # 'valid' is the val split: nothing to say
    assert caplog.text == ""


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


def test_missing_image_files_are_dropped_when_loaded(coco_dir: Path) -> None:
    """A json whose file_name does not match the folder used to load fine; training then skipped every image as
    unreadable and stopped on 'no readable image'. Now each missing file is dropped and listed, and none left is a
    DataError saying where file_name was looked up (check-data still reports, with allow_empty)."""
    (coco_dir / "images" / "train" / "2.png").unlink()
    idx = load_index(coco_dir)
    assert [r.image_id for r in idx.records] == [1, 3] and idx.dropped["missing image file"] == 1
    assert any(
        "1 of 3 images are missing, looked for in " in n and "relative to <root>/<split>" in n for n in idx.notes
    )
    for i in (1, 3):
        (coco_dir / "images" / "train" / f"{i}.png").unlink()
    with pytest.raises(DataError, match=r"no usable images \(3 of 3 images are missing"):
        load_index(coco_dir)
    assert load_index(coco_dir, allow_empty=True).records == []


def test_ground_truth_covers_the_loaded_images_only(coco_dir: Path) -> None:
    """An image dropped while loading (here: its file is missing) is not scored: its boxes used to count as
    missed detections, lowering AP for images the model never saw."""
    from rtdetr.engine.evaluator import ground_truth_for

    (coco_dir / "images" / "train" / "1.png").unlink()
    gt, note = ground_truth_for(load_index(coco_dir))
    assert sorted(im["id"] for im in gt["images"]) == [2, 3]
    assert all(a["image_id"] in (2, 3) for a in gt["annotations"]) and "2 of its images evaluated" in note
    full, note = ground_truth_for(load_coco(coco_dir / "annotations" / "instances_train.json"))
    assert len(full["images"]) == 3 and "evaluated" not in note


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


def test_run_validates_on_the_sources_own_val_split(
    tmp_path: Path, yolo_dir: Path, voc_dir: Path, coco_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With data.val unset, a run validates on its training source's val split where that split holds other images
    (a data.yaml's val, VOC's val.txt), said in a note; not where it is the training images again (yolo_dir's
    yaml says val: images/train, a COCO json, an image folder), nor with auto_val off."""
    from rtdetr.config import DataConfig
    from rtdetr.data.detect import load_run_sets
    from tests.data.conftest import write_image

    for name in ("d", "e"):
        write_image(yolo_dir / "images" / "val" / f"{name}.jpg", (100, 50))
    (yolo_dir / "labels" / "val").mkdir()
    (yolo_dir / "labels" / "val" / "d.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    same = load_run_sets(DataConfig(train=str(yolo_dir / "data.yaml")))
    assert same[1] is None  # val: images/train
    (yolo_dir / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: car, 1: bus}\n")
    train, val = load_run_sets(DataConfig(train=str(yolo_dir / "data.yaml")))
    assert val is not None and sorted(r.path.name for r in val.records) == ["d.jpg", "e.jpg"]
    assert "the 'val' split of the training source, 2 images (data.val is not set" in val.notes[0]
    assert load_run_sets(DataConfig(train=str(yolo_dir / "data.yaml"), auto_val=False))[1] is None
    assert load_run_sets(DataConfig(train=str(yolo_dir / "images" / "train")))[1] is None  # a folder: itself again
    # a data.yaml naming a val folder that is not there (coco128's val: images/val2017) trained without validation
    # and said nothing until the end; without a val entry there is nothing to say
    caplog.clear()
    (yolo_dir / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val2017\nnames: [car, bus]\n")
    with caplog.at_level(logging.WARNING, logger="rtdetr"):
        assert load_run_sets(DataConfig(train=str(yolo_dir / "data.yaml")))[1] is None
    assert "names a 'val' split that cannot be read" in caplog.text
    assert "data.yaml: 'val' is " in caplog.text and "val2017: image folder" in caplog.text  # which entry, where
    assert "training without validation (--val PATH gives one)" in caplog.text
    caplog.clear()
    (yolo_dir / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [car, bus]\n")
    with caplog.at_level(logging.WARNING, logger="rtdetr"):
        assert load_run_sets(DataConfig(train=str(yolo_dir / "data.yaml")))[1] is None
    assert "cannot be read" not in caplog.text

    for coco in (coco_dir, coco_dir / "annotations" / "instances_train.json"):  # one json: the training set
        assert load_run_sets(DataConfig(train=str(coco)))[1] is None
    assert "no json for split" not in caplog.text  # the look for a val json is not a choice made for the user

    (voc_dir / "ImageSets" / "Main" / "train.txt").write_text("im0\n")
    (voc_dir / "ImageSets" / "Main" / "val.txt").write_text("im1\n")
    train, val = load_run_sets(DataConfig(train=str(voc_dir)))
    assert val is not None and [r.path.name for r in val.records] == ["im1.jpg"]
    assert val.class_names == train.class_names
