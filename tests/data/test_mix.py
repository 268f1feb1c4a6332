from __future__ import annotations

import random

import pytest
import torch

from rtdetr.data.mix import MixAugment, copy_paste, mixup, mosaic
from rtdetr.data.transforms import Sample


def _object_image(k: int, box: list[float], size: tuple[int, int] = (64, 96)) -> Sample:
    """Black image with one box filled by grey level 0.2 * (k + 1), labelled k."""
    img = torch.zeros(3, *size)
    x0, y0, x1, y1 = (int(v) for v in box)
    img[:, y0:y1, x0:x1] = 0.2 * (k + 1)
    return Sample(img, torch.tensor([box]), torch.tensor([k]))


def _boxes_follow_pixels(s: Sample, tol: float = 0.04) -> bool:
    """Every box's interior (1 px margin) has the grey level of its label's object."""
    for (x0, y0, x1, y1), k in zip(s.boxes.tolist(), s.labels.tolist()):
        inner = s.image[0, int(y0) + 1 : int(y1) - 1, int(x0) + 1 : int(x1) - 1]
        if inner.numel() == 0 or abs(float(inner.mean()) - 0.2 * (k + 1)) > tol:
            return False
    return True


def test_mosaic_boxes_follow_their_objects() -> None:
    random.seed(0)
    boxes = [[10.0, 8.0, 50.0, 40.0], [40.0, 20.0, 90.0, 60.0], [0.0, 0.0, 30.0, 30.0], [60.0, 30.0, 96.0, 64.0]]
    samples = [_object_image(k, b) for k, b in enumerate(boxes)]
    seen = set()
    for _ in range(40):
        out = mosaic(samples, (0.5, 1.0))
        assert out.size == (64, 96)
        assert _boxes_follow_pixels(out)
        seen.update(out.labels.tolist())
    assert seen == {0, 1, 2, 3}
    # the whole grid (scale 0.5): every object, at half its size, in its quadrant
    out = mosaic(samples, (0.5, 0.5))
    assert sorted(out.labels.tolist()) == [0, 1, 2, 3]
    expect = torch.tensor(boxes) / 2 + torch.tensor([[0, 0, 0, 0], [48, 0, 48, 0], [0, 32, 0, 32], [48, 32, 48, 32]])
    assert torch.allclose(out.boxes[out.labels.argsort()], expect)


def test_the_pixel_check_catches_a_box_that_does_not_follow() -> None:
    s = _object_image(1, [10.0, 8.0, 50.0, 40.0])
    assert _boxes_follow_pixels(s)
    assert not _boxes_follow_pixels(Sample(s.image, s.boxes + 20, s.labels))  # shifted: misses the object
    assert not _boxes_follow_pixels(Sample(s.image, s.boxes, torch.tensor([2])))  # wrong label


def test_mosaic_drops_mostly_cut_boxes() -> None:
    random.seed(1)
    samples = [_object_image(k, [0.0, 0.0, 96.0, 64.0]) for k in range(4)]  # each object fills its image
    for _ in range(20):
        out = mosaic(samples, (1.0, 1.0))  # a window of one image's size somewhere on the grid
        h, w = out.size
        areas = (out.boxes[:, 2:] - out.boxes[:, :2]).prod(1)
        assert (areas >= 0.3 * 96 * 64 - 1e-3).all()  # pieces under 30% of the object are gone
        assert float(areas.sum()) <= h * w + 1e-3  # the kept pieces tile part of the window, no more


def test_mixup_blends_and_keeps_both_box_sets() -> None:
    random.seed(2)
    a, b = _object_image(0, [0.0, 0.0, 20.0, 20.0]), _object_image(1, [50.0, 30.0, 90.0, 60.0])
    out = mixup(a, b, (0.3, 0.3))
    assert torch.allclose(out.image, 0.3 * a.image + 0.7 * b.image)
    assert out.labels.tolist() == [0, 1] and torch.equal(out.boxes, torch.cat([a.boxes, b.boxes]))
    with pytest.raises(ValueError, match="one size"):
        mixup(a, _object_image(0, [0.0, 0.0, 5.0, 5.0], size=(32, 32)))


def test_copy_paste_puts_objects_where_their_boxes_say() -> None:
    random.seed(3)
    torch.manual_seed(3)
    a = _object_image(0, [0.0, 0.0, 30.0, 30.0])
    b = Sample(torch.zeros(3, 64, 96), torch.tensor([[5.0, 5.0, 15.0, 20.0], [60.0, 40.0, 80.0, 60.0]]),
               torch.tensor([2, 3]))  # fmt: skip
    b.image[:, 5:20, 5:15] = 0.6
    b.image[:, 40:60, 60:80] = 0.8
    out = copy_paste(a, b, max_overlap=0.0)
    assert len(out.boxes) == 3 and sorted(out.labels.tolist()) == [0, 2, 3]
    assert _boxes_follow_pixels(out, tol=1e-6)
    assert torch.equal(out.image[:, :30, :30], a.image[:, :30, :30])  # nothing pasted over the existing object


def test_mix_augment_is_off_when_stopped_and_draws_same_size_samples() -> None:
    random.seed(4)
    base = _object_image(0, [10.0, 10.0, 40.0, 40.0])
    drawn = []

    def draw() -> Sample:
        drawn.append(1)
        return _object_image(1, [50.0, 20.0, 90.0, 60.0])

    aug = MixAugment(mosaic=1.0, mixup=1.0, copy_paste=1.0)
    out = aug(base, draw)
    assert out.size == base.size and len(drawn) >= 8  # 3 for the mosaic, 1 + 3 for the mixed-in mosaic, 1 paste
    aug.stopped = True
    drawn.clear()
    assert aug(base, draw) is base and not drawn
