import pytest
import torch

from rtdetr.loss import RTDETRCriterion
from rtdetr.models import create_model


def _targets() -> list[dict]:
    return [
        {"labels": torch.tensor([1, 0]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2]])},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
    ]


def test_all_groups_present_and_finite() -> None:
    model = create_model("rtdetr_r18vd", num_classes=3).train()
    out = model(torch.rand(2, 3, 160, 160), _targets())
    losses = RTDETRCriterion(3)(out, _targets())
    n = model.num_decoder_layers
    expected = {
        f"{t}{s}"
        for t in ("loss_vfl", "loss_bbox", "loss_giou")
        for s in ["", "_enc_0"] + [f"_aux_{i}" for i in range(n - 1)] + [f"_dn_{i}" for i in range(n)]
    }
    assert set(losses) == expected
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()


def test_empty_images_give_zero_box_losses_and_finite_class_loss() -> None:
    crit = RTDETRCriterion(3)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    out = {"pred_logits": torch.randn(1, 10, 3, requires_grad=True), "pred_boxes": torch.rand(1, 10, 4)}
    losses = crit(out, empty)
    assert losses["loss_bbox"] == 0 and losses["loss_giou"] == 0
    assert torch.isfinite(losses["loss_vfl"]) and losses["loss_vfl"] > 0  # pushes every score down
    losses["loss_vfl"].backward()


def test_perfect_boxes_have_zero_box_loss() -> None:
    t = _targets()[:1]
    boxes = torch.zeros(1, 5, 4) + 0.1
    boxes[0, 2], boxes[0, 4] = t[0]["boxes"][0], t[0]["boxes"][1]
    logits = torch.full((1, 5, 3), -8.0)
    logits[0, 2, 1] = logits[0, 4, 0] = 8.0
    losses = RTDETRCriterion(3)({"pred_logits": logits, "pred_boxes": boxes}, t)
    assert losses["loss_bbox"] < 1e-6 and losses["loss_giou"] < 1e-6
    # VFL target for a perfect box is IoU 1 with a confident logit: small loss
    assert losses["loss_vfl"] < 0.01


def test_class_ids_out_of_range_are_a_clear_error() -> None:
    bad = [{"labels": torch.tensor([5]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])}]
    out = {"pred_logits": torch.randn(1, 4, 3), "pred_boxes": torch.rand(1, 4, 4)}
    with pytest.raises(ValueError, match=r"class ids outside \[0, 3\)"):
        RTDETRCriterion(3)(out, bad)


def test_agnostic_encoder_loss() -> None:
    model = create_model("rtdetrv2_r18vd", num_classes=3, decoder={"query_select_method": "agnostic"}).train()
    out = model(torch.rand(2, 3, 160, 160), _targets())
    assert out["enc_aux_outputs"][0]["pred_logits"].shape[-1] == 1
    losses = RTDETRCriterion(3)(out, _targets())
    assert torch.isfinite(losses["loss_vfl_enc_0"])


def _one_match() -> tuple[dict, list[dict], list[tuple[torch.Tensor, torch.Tensor]]]:
    """1 image, 3 queries, 2 classes; query 1 matched to a class-1 target with IoU 0.5 (box half as wide)."""
    logits = torch.tensor([[[0.3, -1.0], [0.2, 0.7], [-2.0, 1.5]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.1, 0.2], [0.2, 0.2, 0.1, 0.1]]])
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    return {"pred_logits": logits, "pred_boxes": boxes}, targets, [(torch.tensor([1]), torch.tensor([0]))]


def _bce(x: float, t: float) -> float:
    import math

    p = 1 / (1 + math.exp(-x))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_mal_matches_the_formula_by_hand() -> None:
    """MAL (DEIM): positive -> BCE toward IoU^1.5 with weight 1; negative -> p^1.5 * BCE toward 0; mean over the
    3 queries times 3, divided by 1 box."""
    import math

    out, targets, indices = _one_match()
    crit = RTDETRCriterion(2, cls_loss="mal")
    got = float(crit.loss_mal(out, targets, indices, num_boxes=1.0))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    total = 0.0
    for q, row in enumerate(out["pred_logits"][0].tolist()):
        for c, x in enumerate(row):
            if (q, c) == (1, 1):
                total += _bce(x, 0.5**1.5)
            else:
                total += sig(x) ** 1.5 * _bce(x, 0.0)
    assert got == pytest.approx(total, rel=1e-5)
    # varifocal weights that positive by its IoU (0.5), so the two losses differ on the same match
    vfl = float(RTDETRCriterion(2).loss_vfl(out, targets, indices, num_boxes=1.0))
    assert abs(vfl - got) > 0.1


def test_mal_is_selected_by_cls_loss_and_named_so() -> None:
    out, targets, _ = _one_match()
    losses = RTDETRCriterion(2, cls_loss="mal")(out, targets)
    assert "loss_mal" in losses and "loss_vfl" not in losses
    assert "loss_vfl" in RTDETRCriterion(2)(out, targets)
    with pytest.raises(ValueError, match="cls_loss"):
        RTDETRCriterion(2, cls_loss="focal")


def test_one_to_many_loss_matches_each_target_repeat_times() -> None:
    """One target, the one-to-many branch holding it exactly (q0), half as wide (q1) and shifted by 0.02 (q2),
    and two far boxes: with 3 repeats q0, q1 and q2 are all matched, and the box losses average over the 3
    pairs (num_boxes x 3); one-to-one (repeat 1) would match q0 alone, for zero box loss."""
    target = [0.5, 0.5, 0.2, 0.2]
    boxes = torch.tensor([[target, [0.5, 0.5, 0.1, 0.2], [0.52, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05],
                           [0.9, 0.9, 0.05, 0.05]]])  # fmt: skip
    branch = {"pred_logits": torch.zeros(1, 5, 1), "pred_boxes": boxes}
    out = {**branch, "o2m_outputs": [branch]}
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([target])}]
    losses = RTDETRCriterion(1, o2m_repeat=3)(out, targets)
    giou_q2 = 0.036 / 0.044  # intersection 0.18 x 0.2, union = enclosing box 0.22 x 0.2
    assert float(losses["loss_bbox_o2m_0"]) == pytest.approx(5.0 * (0.0 + 0.1 + 0.02) / 3, rel=1e-5)
    assert float(losses["loss_giou_o2m_0"]) == pytest.approx(2.0 * (0.0 + 0.5 + (1 - giou_q2)) / 3, rel=1e-5)
    assert float(losses["loss_bbox"]) == pytest.approx(0.0, abs=1e-7)  # the one-to-one group: q0 alone
    once = RTDETRCriterion(1, o2m_repeat=1)(out, targets)
    assert float(once["loss_bbox_o2m_0"]) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="o2m_repeat"):
        RTDETRCriterion(1, o2m_repeat=0)


def test_broken_target_boxes_are_a_clear_error() -> None:
    """Target boxes are validated once per step (the GIoU inside the loss no longer reads them back)."""
    out = {"pred_logits": torch.randn(2, 4, 3), "pred_boxes": torch.rand(2, 4, 4)}
    for bad in (float("nan"), -0.2):
        targets = _targets()
        targets[0]["boxes"] = targets[0]["boxes"].clone()
        targets[0]["boxes"][1, 3] = bad
        with pytest.raises(ValueError, match="target 0 has non-finite or negative-size boxes"):
            RTDETRCriterion(3)(out, targets)
