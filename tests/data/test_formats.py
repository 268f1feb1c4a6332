import json
import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from rtdetr.data import DataError, detect_format, load_index
from rtdetr.data.voc import load_voc


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


def test_synthetic_dataset_is_deterministic(tmp_path: Path) -> None:
    from rtdetr.data.synthetic import make_synthetic_coco

    a = make_synthetic_coco(tmp_path / "a", 4, 2, 64, seed=3)
    b = make_synthetic_coco(tmp_path / "b", 4, 2, 64, seed=3)
    ja, jb = json.loads(a["train"].read_text()), json.loads(b["train"].read_text())
    assert ja["annotations"] == jb["annotations"] and len(ja["images"]) == 4
    assert load_index(a["val"]).num_classes == 4


def test_a_yolo_val_folder_without_names_takes_the_training_sets(
    tmp_path: Path, yolo_dir: Path, coco_dir: Path
) -> None:
    """``--data data.yaml --val images/val`` (a folder holding no names: coco128's layout) stopped with "class names
    unknown" although the training set named the same ids; now the folder takes the training set's names, with a
    note. Names a folder has of its own are still read and compared, a COCO training set lends none, and a broken
    val source's error says how to give another."""
    from rtdetr.config import ConfigError, DataConfig
    from rtdetr.data.detect import load_run_sets
    from tests.data.conftest import write_image

    other = tmp_path / "held_out"
    write_image(other / "images" / "d.jpg", (100, 50))
    (other / "labels").mkdir()
    (other / "labels" / "d.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    train, val = load_run_sets(DataConfig(train=str(yolo_dir / "data.yaml"), val=str(other / "images")))
    assert val is not None and val.class_names == train.class_names == ["car", "bus"]
    assert val.records[0].labels.tolist() == [1]
    assert any("no class names beside the images; the training set's 2 are used" in n for n in val.notes)
    (other / "labels" / "classes.txt").write_text("bus\ncar\n")  # its own names, in another order: an error
    with pytest.raises(ConfigError, match="train and val class names differ"):
        load_run_sets(DataConfig(train=str(yolo_dir / "data.yaml"), val=str(other / "images")))
    (other / "labels" / "classes.txt").unlink()
    with pytest.raises(DataError, match=r"^data\.val: .*class names unknown .*\(--val PATH validates on another set\)"):
        load_run_sets(DataConfig(train=str(coco_dir), val=str(other / "images")))


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
    with caplog.at_level(logging.WARNING, logger="rtdetr"):
        same = load_run_sets(DataConfig(train=str(yolo_dir / "data.yaml")))
    assert same[1] is None  # val: images/train, and said at the start, not only as "no AP" at the end
    assert "its 'val' split is the training images again: training without validation" in caplog.text
    assert f"--val {yolo_dir / 'data.yaml'} validates on them anyway" in caplog.text
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
