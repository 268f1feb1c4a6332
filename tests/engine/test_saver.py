"""Writing predict results: every source gets its own files (no name reused), a video becomes one drawn video and
one JSON-lines file at the source's frame rate, and a command's default folder never overwrites an earlier run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rtdetr.engine.predictor import Predictor
from rtdetr.engine.results import Results
from rtdetr.engine.rundir import finished_run, fresh_folder
from rtdetr.engine.saver import ResultSaver, save_results, source_fps
from rtdetr.models import create_model

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    model = create_model("rtdetr_r18vd", num_classes=3, eval_spatial_size=[64, 64])
    return Predictor(model, ["a", "b", "c"], (64, 64), conf=0.0, max_det=2, batch_size=2)


def _result(path: str | None, frame: int | None = None, size: tuple[int, int] = (40, 30)) -> Results:
    return Results(
        torch.tensor([[1.0, 2.0, 20.0, 25.0]]), torch.tensor([0.9]), torch.tensor([1]), ["a", "b"], size, path, frame,
        Image.new("RGB", size, (10, 200, 10)),
    )  # fmt: skip


def _video(path: Path, frames: int, fps: float, size: tuple[int, int] = (48, 32)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 30 * i % 255, np.uint8))
    writer.release()
    return path


def test_no_name_is_reused(tmp_path: Path) -> None:
    """a/x.jpg, b/x.jpg, x.png and X.jpg used to be written to one x.jpg/x.json, the last one overwriting the rest."""
    paths = ["a/x.jpg", "b/x.jpg", "c/x.png", "c/X.jpg", None, None]
    with ResultSaver(tmp_path / "out") as saver:
        for p in paths:
            saver.add(_result(p))
    names = sorted(f.name for f in (tmp_path / "out").iterdir())
    assert names == sorted(
        f"{s}.{ext}" for s in ("x", "x_2", "x_3", "X_4", "image_00000", "image_00001") for ext in ("jpg", "json")
    )
    written = [json.loads(f.read_text())["path"] for f in saver.written if f.suffix == ".json"]
    assert written == paths  # each source's JSON kept, in order
    assert all(f.is_file() for f in saver.written)


def test_video_becomes_one_video_and_jsonl(tmp_path: Path, predictor: Predictor) -> None:
    clips = tmp_path / "clips"
    (clips / "b").mkdir(parents=True)
    _video(clips / "clip.avi", 6, 10.0)
    _video(clips / "b" / "clip.avi", 3, 4.0, (40, 24))
    assert source_fps(str(clips / "clip.avi"), 2) == pytest.approx(5.0)
    assert source_fps(None) == source_fps(str(tmp_path / "missing.avi")) == 30.0
    out = tmp_path / "out"
    results = list(
        save_results(predictor.stream([clips / "clip.avi", clips / "b" / "clip.avi"], video_stride=2), out, 2)
    )
    assert [r.frame for r in results] == [0, 2, 4, 0, 2]
    files = sorted(f.name for f in out.iterdir())
    assert files[0::2] == ["clip.jsonl", "clip_2.jsonl"] and all(f.endswith((".mp4", ".avi")) for f in files[1::2])
    for name, frames, fps, size in (("clip", [0, 2, 4], 5.0, (48, 32)), ("clip_2", [0, 2], 2.0, (40, 24))):
        lines = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        assert [d["frame"] for d in lines] == frames and all(len(d["detections"]) == 2 for d in lines)
        video = next(out.glob(f"{name}.[ma][pv][4i]"))
        cap = cv2.VideoCapture(str(video))
        got = [cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)]
        count = 0
        while cap.read()[0]:
            count += 1
        cap.release()
        assert got == [pytest.approx(fps), size[0], size[1]] and count == len(frames)


def test_fresh_folder(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "predict"
    assert fresh_folder(base) == base  # missing
    base.mkdir(parents=True)
    assert fresh_folder(base) == base  # empty
    (base / "x.jpg").write_bytes(b"1")
    (tmp_path / "runs" / "predict2").write_text("a file, not a folder")
    assert fresh_folder(base) == tmp_path / "runs" / "predict3"


def test_folder_skips_what_it_cannot_read(
    tmp_path: Path, predictor: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    """A video that cannot be opened used to stop the whole folder; GIFs were ignored without a word, and so were
    the other files."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (30, 20), (1, 2, 3)).save(folder / "a.png")
    Image.new("P", (30, 20)).save(folder / "b.gif")
    (folder / "c.mp4").write_bytes(b"not a video")
    Image.new("RGB", (30, 20)).save(folder / "d.jpg")
    (folder / "notes.txt").write_text("x")
    (folder / ".DS_Store").write_bytes(b"x")
    (folder / "sub").mkdir()
    with caplog.at_level(logging.WARNING):
        got = [Path(r.path).name for r in predictor.stream(folder)]
    assert got == ["a.png", "b.gif", "d.jpg"]
    assert "c.mp4: cannot open video" in caplog.text
    assert "1 file not read (not an image or video by its extension): notes.txt" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a glob's folders are not files to read
        assert len(predictor(str(tmp_path / "**" / "*.*g"))) == 2
        with pytest.raises(FileNotFoundError, match="the pattern matches no file"):  # only a folder matched
            predictor(str(tmp_path / "*"))
    assert "Is a directory" not in caplog.text


def test_finished_run_reasons_count_epochs_in_words() -> None:
    assert finished_run(1, None, 1, 5.0) == (
        "it trained its one epoch; to train longer, resume with more (--epochs N, train.epochs=N)"
    )
    assert "all 3 epochs" in (finished_run(3, None, 3, 5.0) or "")
    assert "time budget of 60 s (stopped after epoch 2)" in (finished_run(5, 60.0, 2, 61.0) or "")
    assert finished_run(5, 60.0, 2, 30.0) is None


def test_yolo_labels_round_trip_through_the_yolo_reader(tmp_path: Path, predictor: Predictor) -> None:
    """--save-txt writes what `rtdetr train` reads: the YOLO loader gives back the predicted pixel boxes and
    classes (a swapped axis, a missing normalisation or xyxy written as xywh would not)."""
    from rtdetr.data import load_index

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate([(80, 50), (37, 91)]):  # not square: an axis mix-up shows
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(images / f"im{i}.png")
    out = tmp_path / "out"
    results = list(save_results(predictor.stream(images), out, save_txt=True, save_conf=True))
    for r in results:
        lines = (out / "labels" / f"{Path(str(r.path)).stem}.txt").read_text().splitlines()
        assert [float(line.split()[5]) for line in lines] == pytest.approx(r.scores.tolist(), abs=1e-5)
    (out / "labels").rename(tmp_path / "labels")  # beside the original images: a YOLO set, classes.txt included
    index = load_index(images, "train", "yolo")
    assert index.class_names == ["a", "b", "c"]
    assert any("sixth column, a score" in n for n in index.notes)
    for rec in index.records:
        r = next(r for r in results if Path(str(r.path)).name == rec.path.name)
        assert rec.labels.tolist() == r.labels.tolist()
        np.testing.assert_allclose(rec.boxes, r.boxes.numpy(), atol=1e-3)


def test_yolo_lines_of_a_known_box_and_the_empty_and_video_cases(tmp_path: Path, predictor: Predictor) -> None:
    r = _result("x.jpg", size=(40, 30))  # box 1,2 .. 20,25 in a 40x30 image, class 1, score 0.9
    assert r.to_yolo() == "1 0.262500 0.450000 0.475000 0.766667\n"
    assert r.to_yolo(conf=True) == "1 0.262500 0.450000 0.475000 0.766667 0.90000\n"
    empty = Results(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), ["a", "b", "c"], (5, 5),
                    "classes.jpg", None, Image.new("RGB", (5, 5)))  # fmt: skip
    assert empty.to_yolo() == ""
    with pytest.raises(ValueError, match=r"or as .txt \(YOLO labels\)"):
        r.save(tmp_path / "x.csv")
    assert r.save(tmp_path / "x.txt").read_text() == r.to_yolo()
    _video(tmp_path / "clip.avi", 3, 10.0)
    with ResultSaver(tmp_path / "out", save_txt=True) as saver:
        saver.add(empty)
        saver.add(_result("before/clip_1.jpg"))  # images named like the video's frames, before and after it
        for res in predictor.stream(tmp_path / "clip.avi"):
            saver.add(res)
        saver.add(_result("after/clip_2.png"))
    labels = sorted(f.name for f in (tmp_path / "out" / "labels").iterdir())
    # an image without detections: an empty file; one named like the class list does not overwrite it; frame
    # labels and image labels never take each other's names, and each image's label matches its drawn image
    assert labels == ["classes.txt", "classes_2.txt", "clip_0.txt", "clip_1.txt", "clip_1_2.txt", "clip_2.txt",
                      "clip_2_2.txt"]  # fmt: skip
    assert {"clip_1.jpg", "clip_2_2.jpg"} <= {f.name for f in (tmp_path / "out").iterdir()}
    assert (tmp_path / "out" / "labels" / "classes_2.txt").read_text() == ""
    assert (tmp_path / "out" / "labels" / "classes.txt").read_text() == "a\nb\nc\n"
    lines = {n: (tmp_path / "out" / "labels" / n).read_text().splitlines() for n in labels}
    assert [len(lines[n]) for n in ("clip_0.txt", "clip_1_2.txt", "clip_2.txt")] == [2, 2, 2]  # the frames
    assert lines["clip_1.txt"] == lines["clip_2_2.txt"] == [r.to_yolo().strip()]  # the two images' one box


def test_crops_hold_each_detections_pixels(tmp_path: Path, predictor: Predictor) -> None:
    """``save_crop``: each detection's region of the original image, by class folder, named after its source and
    its rank; boxes past the edge are clipped, sub-pixel boxes give at least one pixel; a class name that is not a
    folder name is made one; a video's frames are told apart by frame."""
    yy, xx = np.mgrid[0:30, 0:40]
    pixels = np.stack([xx * 6, yy * 8, (xx + yy) * 3], -1).astype(np.uint8)  # each pixel its own (smooth for JPEG)
    boxes = torch.tensor([[1.5, 2.2, 20.1, 25.0], [-5.0, 28.0, 60.0, 40.0], [10.0, 10.0, 10.0, 10.0]])
    r = Results(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 0, 1]), ["AC/DC", "b"], (40, 30),
                "d/x.png", None, Image.fromarray(pixels))  # fmt: skip
    expected = [pixels[2:25, 1:21], pixels[28:30, 0:40], pixels[10:11, 10:11]]  # floor/ceil, clipped, >= 1 px
    assert [np.asarray(c).tolist() for c in r.crops()] == [e.tolist() for e in expected]
    with ResultSaver(tmp_path / "out", save_crop=True) as saver:
        saver.add(r)
    crops = tmp_path / "out" / "crops"
    assert sorted(p.relative_to(crops).as_posix() for p in crops.rglob("*.jpg")) == [
        "AC_DC/x_2.jpg",
        "b/x_1.jpg",
        "b/x_3.jpg",
    ]
    saved = np.asarray(Image.open(crops / "b" / "x_1.jpg")).astype(int)
    assert saved.shape == (23, 20, 3) and np.abs(saved - expected[0]).mean() < 3  # JPEG at quality 95
    out = tmp_path / "video"
    clip = _video(tmp_path / "clip.avi", 3, 10.0)
    Image.new("RGB", (48, 32)).save(tmp_path / "clip_1.png")  # an image named as a frame: their crops kept apart
    results = list(save_results(predictor.stream([tmp_path / "clip_1.png", clip]), out, save_crop=True))
    names = sorted(p.name for p in (out / "crops").rglob("*.jpg"))
    stems = ["clip_1", "clip_0", "clip_1_2", "clip_2"]  # the image, then frames 0, 1 (its name taken) and 2
    assert [r.frame for r in results] == [None, 0, 1, 2]
    assert names == sorted(f"{stem}_{k}.jpg" for stem in stems for k in (1, 2))  # max_det 2 per image
