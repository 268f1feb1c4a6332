import pytest
import torch

from rtdetr.loss.matcher import HungarianMatcher


def _targets() -> list[dict]:
    return [
        {"labels": torch.tensor([1, 0]), "boxes": torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2]])},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
    ]


def test_obvious_assignment() -> None:
    logits = torch.full((3, 4, 3), -5.0)
    boxes = torch.tensor([[0.5, 0.5, 0.1, 0.1]]).repeat(3, 4, 1)
    boxes[0, 3] = torch.tensor([0.2, 0.2, 0.1, 0.1])
    boxes[0, 1] = torch.tensor([0.7, 0.7, 0.2, 0.2])
    logits[0, 3, 1] = logits[0, 1, 0] = 5.0
    boxes[2, 2] = torch.tensor([0.5, 0.5, 0.4, 0.4])
    idx = HungarianMatcher()({"pred_logits": logits, "pred_boxes": boxes}, _targets())
    assert dict(zip(idx[0][0].tolist(), idx[0][1].tolist())) == {3: 0, 1: 1}
    assert idx[1][0].numel() == 0 and idx[2][0].tolist() == [2]


def test_batched_equals_per_image() -> None:
    out = {"pred_logits": torch.randn(3, 6, 3), "pred_boxes": torch.rand(3, 6, 4) * 0.5 + 0.1}
    m = HungarianMatcher()
    batched = m(out, _targets())
    for i, t in enumerate(_targets()):
        single = m({k: v[i : i + 1] for k, v in out.items()}, [t])[0]
        assert torch.equal(single[0], batched[i][0]) and torch.equal(single[1], batched[i][1])


def test_all_empty_and_non_finite() -> None:
    m = HungarianMatcher()
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    out = {"pred_logits": torch.randn(2, 5, 3), "pred_boxes": torch.rand(2, 5, 4)}
    assert all(i.numel() == 0 and j.numel() == 0 for i, j in m(out, empty))
    out["pred_logits"][0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError):
        m(out, _targets()[:2])
