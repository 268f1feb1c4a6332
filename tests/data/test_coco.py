import json
from pathlib import Path

import numpy as np
import pytest

from rtdetr.data import DataError, detect_format, load_index
from rtdetr.data.coco import load_coco


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
