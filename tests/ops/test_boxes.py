import pytest
import torch

from rtdetr.ops.boxes import (
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    inverse_sigmoid,
)


def test_format_round_trip() -> None:
    boxes = torch.rand(10, 4)
    assert torch.allclose(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(boxes)), boxes, atol=1e-6)
    assert torch.equal(box_cxcywh_to_xyxy(torch.tensor([0.5, 0.5, 0.2, 0.4])), torch.tensor([0.4, 0.3, 0.6, 0.7]))


def test_iou_known_values() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    iou, union = box_iou(a, b)
    assert torch.allclose(iou, torch.tensor([[1 / 7, 1.0, 0.0]]))
    assert torch.allclose(union, torch.tensor([[7.0, 4.0, 5.0]]))


def test_giou_known_values_and_range() -> None:
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0, 3.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    # disjoint: hull 3, union 2 -> 0 - (3 - 2) / 3
    assert torch.allclose(generalized_box_iou(a, b), torch.tensor([[-1 / 3, 1.0]]))
    x = box_cxcywh_to_xyxy(torch.rand(20, 4) * 0.5 + 0.1)
    g = generalized_box_iou(x, x)
    assert g.min() >= -1 and g.max() <= 1 + 1e-6
    assert torch.allclose(g.diag(), torch.ones(20))


def test_giou_rejects_degenerate_boxes_with_a_clear_error() -> None:
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="boxes2 holds degenerate"):
        generalized_box_iou(good, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="non-finite"):
        generalized_box_iou(torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), good)


def test_inverse_sigmoid_clips() -> None:
    x = torch.tensor([0.0, 0.25, 0.5, 1.0])
    y = inverse_sigmoid(x)
    assert torch.isfinite(y).all()
    assert torch.allclose(y[1:3], torch.logit(x[1:3]))
    assert y[0] == pytest.approx(-11.5129, abs=1e-3)
