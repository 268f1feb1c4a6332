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
