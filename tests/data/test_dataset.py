import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rtdetr.data import BatchCollator, DetectionDataset, load_image, load_index
from rtdetr.data.transforms import build_train_transforms, build_val_transforms
from tests.data.conftest import write_image


def test_sample_format(coco_dir: Path) -> None:
    ds = DetectionDataset(load_index(coco_dir), build_val_transforms((32, 32)))
    img, t = ds[0]
    assert img.shape == (3, 32, 32) and img.min() >= 0 and img.max() <= 1
    assert torch.allclose(t["boxes"][0], torch.tensor([20 / 64, 15 / 48, 20 / 64, 10 / 48]))
    assert t["orig_size"].tolist() == [64, 48] and t["size"].tolist() == [32, 32] and int(t["image_id"]) == 1


@pytest.mark.parametrize("size", [(32, 32), (40, 96)])
def test_validation_sees_the_pixels_of_predict_and_of_the_official_pipeline(coco_dir: Path, size: tuple) -> None:
    """``val`` resizes as the official evaluation does (PIL images through torchvision's Resize: Pillow's
    bilinear) and as ``predict`` does: the same pixels exactly, downscaled and upscaled."""
    from rtdetr.engine.predictor import Predictor
    from rtdetr.models import create_model

    ds = DetectionDataset(load_index(coco_dir), build_val_transforms(size))
    predictor = Predictor(create_model("rtdetr_r18vd", num_classes=2), ["cat", "dog"], size)
    for i, rec in enumerate(ds.index.records):
        img = load_image(rec.path)
        official = torch.from_numpy(np.array(img.resize(size[::-1], Image.Resampling.BILINEAR))).permute(2, 0, 1)
        got = ds[i][0]
        assert torch.equal(got, official.float() / 255)
        assert torch.equal(got, predictor.preprocess([img])[0][0])


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_odd_image_modes_load_as_rgb(tmp_path: Path, mode: str) -> None:
    p = write_image(tmp_path / "x.png", mode=mode)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (64, 48)


def test_exif_orientation_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (20, 40)


def test_phone_and_web_formats_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HEIC (iPhone photos, through pillow-heif, opened by load_image in a fresh process: nothing else registers
    the opener), AVIF and .jfif files are images to a dataset folder and to load_image; without pillow-heif a HEIC
    file's error says what to install."""
    import subprocess
    import sys

    import numpy as np
    import pillow_heif

    from rtdetr.data import dataset as dataset_module

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    (tmp_path / "images").mkdir()
    pillow_heif.from_pillow(img).save(tmp_path / "images" / "IMG_0001.HEIC")
    img.save(tmp_path / "images" / "b.avif")
    img.save(tmp_path / "images" / "c.jfif", "JPEG")
    (tmp_path / "labels").mkdir()
    for stem in ("IMG_0001", "b", "c"):
        (tmp_path / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "classes.txt").write_text("thing\n")
    idx = load_index(tmp_path)
    assert sorted(r.path.name for r in idx.records) == ["IMG_0001.HEIC", "b.avif", "c.jfif"]
    code = "import sys; from rtdetr.data import load_image; im = load_image(sys.argv[1]); print(im.size, im.mode)"
    out = subprocess.run([sys.executable, "-c", code, str(idx.records[0].path)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split() == ["(40,", "30)", "RGB"], out.stderr
    assert load_image(tmp_path / "images" / "b.avif").size == (40, 30)

    (tmp_path / "broken.heic").write_bytes(b"not a photo")
    monkeypatch.setattr(dataset_module, "heif_opener", lambda: False)  # as without pillow-heif
    with pytest.raises(OSError, match=r"broken.heic: cannot decode image .*pip install pillow-heif"):
        load_image(tmp_path / "broken.heic")


def test_corrupt_and_truncated_images_are_skipped_with_a_named_warning(coco_dir: Path, caplog) -> None:  # noqa: ANN001
    good = coco_dir / "images" / "train" / "2.png"
    (coco_dir / "images" / "train" / "1.png").write_bytes(b"not an image")
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 3])
    ds = DetectionDataset(load_index(coco_dir), build_val_transforms((32, 32)))
    with caplog.at_level("WARNING"):
        img, t = ds[0]
    assert int(t["image_id"]) == 3  # next readable image
    assert {Path(p).name for p in ds.bad_files} == {"1.png", "2.png"}
    assert "1.png" in caplog.text
    with pytest.raises(OSError, match="1.png: cannot decode image"):
        load_image(coco_dir / "images" / "train" / "1.png")


def test_training_pipeline_keeps_boxes_valid(coco_dir: Path) -> None:
    ds = DetectionDataset(load_index(coco_dir), build_train_transforms((64, 64)))
    for _ in range(20):
        img, t = ds[0]
        assert img.shape == (3, 64, 64)
        b = t["boxes"]
        assert ((b >= 0) & (b <= 1)).all() and (b[:, 2:] > 0).all()
        assert len(b) == len(t["labels"])


def test_collator_multiscale_until_stop_epoch() -> None:
    batch = [(torch.rand(3, 64, 64), {"labels": torch.zeros(0)}) for _ in range(2)]
    col = BatchCollator([(32, 64), (96, 128)], stop_epoch=2)
    sizes = {tuple(col(batch)[0].shape[-2:]) for _ in range(20)}
    assert sizes == {(32, 64), (96, 128)}
    col.set_epoch(2)
    assert tuple(col(batch)[0].shape[-2:]) == (64, 64)
    with pytest.raises(ValueError, match="differ in size"):
        BatchCollator()([(torch.rand(3, 8, 8), {}), (torch.rand(3, 9, 8), {})])


def _photo(path: Path, orientation: int | None) -> None:
    """A 1600x1200 picture as shown (gradient, a white box at x 400..800, y 300..600), stored as a camera does:
    with EXIF orientation 6 the pixels are stored turned and the tag turns them back."""
    x = torch.linspace(0, 1, 1600)[None, :].expand(1200, 1600)
    y = torch.linspace(0, 1, 1200)[:, None].expand(1200, 1600)
    arr = torch.stack([x, y, (x + y) / 2], -1).mul(200)
    arr[300:600, 400:800] = 255
    shown = Image.fromarray(arr.round().to(torch.uint8).numpy())
    if orientation is None:
        shown.save(path, quality=95)
        return
    stored = shown.transpose(Image.Transpose.ROTATE_90)  # orientation 6 shows it turned 90 degrees clockwise
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.save(path, quality=95, exif=exif)


@pytest.mark.parametrize(("name", "orientation"), [("p.jpg", None), ("p.jpg", 6), ("p.png", None)])
@pytest.mark.parametrize("annotated_size", [None, (800, 600)])
def test_large_images_shrink_when_loaded_and_keep_their_boxes(
    tmp_path: Path, name: str, orientation: int | None, annotated_size: tuple[int, int] | None
) -> None:
    from rtdetr.data import ImageRecord
    from rtdetr.data.dataset import shrunk_size
    from rtdetr.data.records import DatasetIndex

    _photo(tmp_path / name, orientation)
    box = [400.0, 300.0, 800.0, 600.0]  # in the picture as shown
    if annotated_size:  # annotation made on a half-size copy (width/height stated)
        box = [v / 2 for v in box]
    w, h = annotated_size or (None, None)
    rec = ImageRecord(tmp_path / name, np.array([box], np.float32), np.array([1]), 7, w, h)
    index = DatasetIndex([rec], ["a", "b"], "yolo", str(tmp_path))

    full = DetectionDataset(index, build_val_transforms((160, 160)))
    shrunk = DetectionDataset(index, build_val_transforms((160, 160)), load_cover=(320, 320))
    img, _, full_size = shrunk.load(0)
    assert full_size == (1600, 1200) and img.size == shrunk_size((1600, 1200), (320, 320)) == (427, 320)
    (a, ta), (b, tb) = full[0], shrunk[0]
    frame = list(annotated_size or (1600, 1200))  # detections are scored in the annotation's frame
    assert tb["orig_size"].tolist() == ta["orig_size"].tolist() == frame
    assert torch.allclose(tb["boxes"], ta["boxes"], atol=1e-6)
    assert torch.allclose(tb["boxes"][0], torch.tensor([0.375, 0.375, 0.25, 0.25]), atol=1e-6)
    assert (a - b).abs().mean() < 0.01  # the same picture at the network's size
    white = b[:, 50:70, 50:70]  # inside the box (x 40..80, y 40..80 at 160x160)
    assert white.min() > 0.95


def test_shrunk_size_covers_the_target_on_both_sides() -> None:
    from rtdetr.data import load_cover
    from rtdetr.data.dataset import shrunk_size

    assert shrunk_size((4032, 3024), (1280, 1280)) == (1707, 1280)
    assert shrunk_size((3024, 4032), (1280, 1280)) == (1280, 1707)
    assert shrunk_size((8000, 1000), (1280, 1280)) == (8000, 1000)  # a panorama is not shrunk below its height
    assert shrunk_size((1000, 800), (1280, 1280)) == (1000, 800)  # never enlarged
    assert shrunk_size((2000, 1000), (640, 320)) == (1280, 640)  # (height, width) cover
    assert load_cover((640, 320), 2.0) == (1280, 640) and load_cover((640, 640), 0) is None


@pytest.mark.parametrize("stated", [(80, 40), (40, 80), None])
def test_a_photo_annotated_unturned_is_loaded_as_annotated(tmp_path: Path, stated: tuple[int, int] | None) -> None:
    """Stored 80x40 with a white block at x 10..30, y 5..25 and EXIF orientation 6 (shown 40x80). An annotation
    stating 80x40 was made on the stored pixels (labelImg shows photos unturned): the photo is loaded as stored and
    the box lies on the block. Stating the shown 40x80 (or nothing, as YOLO) means the picture as shown: it is
    turned, and the block (turned with it) is at x 15..35, y 10..30."""
    from rtdetr.data import ImageRecord
    from rtdetr.data.records import DatasetIndex

    arr = np.full((40, 80, 3), 30, np.uint8)
    arr[5:25, 10:30] = 255
    stored = Image.fromarray(arr)
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "p.png", exif=exif)
    box = [10.0, 5.0, 30.0, 25.0] if stated == (80, 40) else [15.0, 10.0, 35.0, 30.0]
    w, h = stated or (None, None)
    index = DatasetIndex([ImageRecord(tmp_path / "p.png", np.array([box], np.float32), np.array([0]), 0, w, h)],
                         ["a"], "voc", str(tmp_path))  # fmt: skip
    img, t = DetectionDataset(index)[0]
    size = (80, 40) if stated == (80, 40) else (40, 80)
    assert t["orig_size"].tolist() == list(size) and tuple(img.shape[1:]) == size[::-1]
    cx, cy, bw, bh = (t["boxes"][0] * torch.tensor([size[0], size[1]] * 2)).tolist()
    inside = img[:, round(cy - bh / 2) : round(cy + bh / 2), round(cx - bw / 2) : round(cx + bw / 2)]
    assert inside.min() > 0.95 and img.mean() < 0.4  # the box covers the white block, and only it


def test_an_empty_image_file_is_called_empty(tmp_path: Path) -> None:
    """A 0-byte image (an interrupted copy or download) said "not an image format Pillow reads"; it says empty,
    from a path and from a file object read from the middle, and other junk still says what it said."""
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(OSError, match=r"empty.jpg: cannot decode image \(an empty file: 0 bytes\)"):
        load_image(tmp_path / "empty.jpg")
    stream = io.BytesIO(b"header")
    stream.seek(6)
    with pytest.raises(OSError, match=r"^up: cannot decode image \(an empty file: 0 bytes\)$"):
        load_image(stream, name="up")
    assert stream.tell() == 6  # left where its image was to begin
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    with pytest.raises(OSError, match=r"junk.jpg: cannot decode image \(not an image format Pillow reads\)$"):
        load_image(tmp_path / "junk.jpg")
    junk = io.BytesIO(b"junk")
    with pytest.raises(OSError, match=r"^up: cannot decode image \(not an image format Pillow reads\)$"):
        load_image(junk, name="up")
    assert junk.tell() == 0
