import json
from pathlib import Path

import pytest

from rtdetr.data import load_index


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
