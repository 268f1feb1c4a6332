import colorsys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from rtdetr.data import transforms
from rtdetr.data.transforms import (
    Compose,
    HorizontalFlip,
    PhotometricDistort,
    RandomIoUCrop,
    Resize,
    Sample,
    Sanitize,
    ZoomOut,
    default_scales,
    hsv_to_rgb,
    normalized_cxcywh,
    rgb_to_hsv,
)


def _sample() -> Sample:
    return Sample(torch.rand(3, 40, 80), torch.tensor([[10.0, 5.0, 30.0, 25.0]]), torch.tensor([2]))


def test_flip_resize_sanitize_geometry() -> None:
    s = HorizontalFlip(p=1.0)(_sample())
    assert s.boxes.tolist() == [[50.0, 5.0, 70.0, 25.0]]
    s = Resize((20, 40))(s)
    assert s.image.shape == (3, 20, 40) and s.boxes.tolist() == [[25.0, 2.5, 35.0, 12.5]]
    tiny = Sanitize(min_size=1)(
        Sample(s.image, torch.tensor([[1.0, 1.0, 1.5, 9.0], [-5.0, 0.0, 10.0, 10.0]]), torch.tensor([0, 1]))
    )
    assert tiny.labels.tolist() == [1] and tiny.boxes.tolist() == [[0.0, 0.0, 10.0, 10.0]]
    assert torch.allclose(normalized_cxcywh(s), torch.tensor([[0.75, 0.375, 0.25, 0.5]]))


def test_zoom_out_keeps_content_at_the_boxes() -> None:
    torch.manual_seed(1)
    s = _sample()
    z = ZoomOut(p=1.0, side_range=(2.0, 2.0))(s)
    assert z.image.shape == (3, 80, 160)
    x0, y0 = int(z.boxes[0, 0]), int(z.boxes[0, 1])
    assert torch.equal(z.image[:, y0 : y0 + 20, x0 : x0 + 20], s.image[:, 5:25, 10:30])


def test_iou_crop_keeps_centred_boxes_inside() -> None:
    torch.manual_seed(0)
    for _ in range(20):
        c = RandomIoUCrop(p=1.0)(_sample())
        h, w = c.size
        assert (c.boxes[:, 0::2] <= w).all() and (c.boxes[:, 1::2] <= h).all() and (c.boxes >= 0).all()
    empty = Sample(torch.rand(3, 10, 10), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert RandomIoUCrop(p=1.0)(empty) is empty


def test_photometric_stays_in_range_and_hsv_round_trip() -> None:
    img = torch.rand(3, 16, 16)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(img)), img, atol=1e-5)
    out = PhotometricDistort(p=1.0)(Sample(img, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))).image
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1 and not torch.equal(out, img)


def _only(op: str, factor: float, monkeypatch: pytest.MonkeyPatch, contrast_first: bool = True) -> None:
    """Make PhotometricDistort apply ``op`` alone with ``factor`` (coins in the order it asks for them)."""
    coins = [op == "brightness", contrast_first, *([op == "contrast"] if contrast_first else [])]
    coins += [op == "saturation", op == "hue", *([] if contrast_first else [op == "contrast"]), False]
    it = iter(coins)
    monkeypatch.setattr(transforms, "random", SimpleNamespace(random=lambda: 0.0 if next(it) else 0.99))
    monkeypatch.setattr(transforms, "_rand", lambda lo, hi: factor)


PIL_OPS = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast, "saturation": ImageEnhance.Color}


@pytest.mark.parametrize("contrast_first", [True, False])
@pytest.mark.parametrize("factor", [0.5, 0.875, 1.125, 1.5])
@pytest.mark.parametrize("op", sorted(PIL_OPS))
def test_photometric_ops_match_pillow(op: str, factor: float, contrast_first: bool, monkeypatch) -> None:
    """The official pipeline distorts PIL images, so torchvision runs Pillow's ImageEnhance there: each of our
    ops on the float image gives Pillow's uint8 result within its rounding (clipping at 255 included)."""
    rgb = np.random.default_rng(3).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    rgb[0, :4] = [250, 240, 5]  # saturated pixels reach the clip
    want = np.asarray(PIL_OPS[op](Image.fromarray(rgb)).enhance(factor), dtype=np.float64)
    _only(op, factor, monkeypatch, contrast_first)
    img = torch.from_numpy(rgb).permute(2, 0, 1).double() / 255
    got = PhotometricDistort()(Sample(img, torch.zeros(0, 4), torch.zeros(0))).image.permute(1, 2, 0).numpy() * 255
    assert np.abs(got - want).max() <= 1.5, f"{op} x{factor}: largest difference {np.abs(got - want).max():.2f} levels"


@pytest.mark.parametrize("factor", [-0.05, 0.02, 0.05])
def test_photometric_hue_matches_colorsys(factor: float, monkeypatch) -> None:
    img = torch.rand(3, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    img[:, 0, 0] = torch.tensor([0.3, 0.3, 0.3])  # grey: no hue
    want = torch.tensor(
        [
            colorsys.hsv_to_rgb((h + factor) % 1.0, s, v)
            for h, s, v in (colorsys.rgb_to_hsv(*p) for p in img.flatten(1).T.tolist())
        ],
        dtype=torch.float64,
    ).T.reshape(img.shape)
    _only("hue", factor, monkeypatch)
    got = PhotometricDistort()(Sample(img, torch.zeros(0, 4), torch.zeros(0))).image
    assert torch.allclose(got, want, atol=1e-9)


def test_compose_stops_strong_ops() -> None:
    c = Compose([ZoomOut(p=1.0), Resize((40, 80))], stop_epoch=1)
    c.set_epoch(1)
    s = _sample()
    assert torch.allclose(c(s).boxes, s.boxes)


def test_default_scales() -> None:
    official = [480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800]
    assert default_scales((640, 640)) == [(s, s) for s in official]
    square = default_scales((320, 320))
    assert all(h == w and h % 32 == 0 for h, w in square) and max(square) == (416, 416)  # 400 rounds half up
    # a wide input keeps its aspect ratio at every scale (within the rounding of each side to 32)
    wide = default_scales((384, 640))
    assert wide[0] == (288, 480) and (384, 640) in wide and wide[-1] == (480, 800)
    assert all(h % 32 == 0 and w % 32 == 0 and abs(h / w - 384 / 640) < 0.04 for h, w in wide), wide
    assert [w for _, w in wide] == official
