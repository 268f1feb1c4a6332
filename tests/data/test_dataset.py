from pathlib import Path

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
    col = BatchCollator([32, 96], stop_epoch=2)
    sizes = {col(batch)[0].shape[-1] for _ in range(20)}
    assert sizes <= {32, 96} and len(sizes) == 2
    col.set_epoch(2)
    assert col(batch)[0].shape[-1] == 64
    with pytest.raises(ValueError, match="differ in size"):
        BatchCollator()([(torch.rand(3, 8, 8), {}), (torch.rand(3, 9, 8), {})])
