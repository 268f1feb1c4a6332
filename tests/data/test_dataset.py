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
