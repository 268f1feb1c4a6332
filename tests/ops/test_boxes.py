import pytest
import torch

from rtdetr.ops.boxes import (
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    inverse_sigmoid,
    paired_box_iou,
    paired_generalized_box_iou,
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


def test_paired_iou_and_giou_are_the_pairwise_diagonal_value_and_gradient() -> None:
    """The loss's matched pairs (768 with the demo's denoising groups) took an N x N matrix for its diagonal: 12%
    of the demo's training step. The pair-by-pair functions must give the same values and gradients, on overlapping,
    nested, disjoint, identical, touching and zero-area pairs, and in any float precision."""
    g = torch.Generator().manual_seed(0)
    cx = torch.rand(200, 4, generator=g, dtype=torch.float64)
    a = box_cxcywh_to_xyxy(cx)
    b = box_cxcywh_to_xyxy(cx + 0.3 * torch.randn(200, 4, generator=g, dtype=torch.float64)).clone()
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2])  # valid xyxy
    b[0] = a[0]  # identical
    b[1] = torch.tensor([5.0, 5.0, 6.0, 6.0])  # disjoint
    a[2], b[2] = torch.tensor([0.2, 0.2, 0.2, 0.5]), torch.tensor([0.1, 0.1, 0.3, 0.6])  # zero-area, inside
    a[3], b[3] = torch.tensor([0.0, 0.0, 0.5, 0.5]), torch.tensor([0.5, 0.0, 1.0, 0.5])  # touching
    a[4], b[4] = torch.tensor([0.3, 0.3, 0.3, 0.3]), torch.tensor([0.3, 0.3, 0.3, 0.3])  # two points
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        x, y = a.to(dtype).requires_grad_(), b.to(dtype).requires_grad_()
        giou = paired_generalized_box_iou(x, y)
        assert giou.shape == (200,) and torch.isfinite(giou).all()
        assert torch.equal(giou, generalized_box_iou(x, y, check=False).diag())
        assert torch.equal(paired_box_iou(x, y), box_iou(x, y)[0].diag())
        weights = torch.arange(200)  # a gradient that differs per pair
        gx, gy = torch.autograd.grad((giou * weights).sum(), (x, y))
        hx, hy = torch.autograd.grad((generalized_box_iou(x, y, check=False).diag() * weights).sum(), (x, y))
        for ours, theirs in ((gx, hx), (gy, hy)):  # (two points on each other: NaN in both)
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0, equal_nan=True)
    assert paired_box_iou(a[:1], b[:1]).item() == 1.0 and paired_generalized_box_iou(a[1:2], b[1:2]).item() < 0
