"""Our criterion against HF transformers' RTDetrLoss on the same predictions and targets."""

import pytest
import torch

from rtdetr.loss import RTDETRCriterion
from rtdetr.models import create_model

transformers = pytest.importorskip("transformers", reason="HF parity tests need the 'hf-parity' extra")
pytestmark = pytest.mark.parity


def test_loss_terms_match_hf() -> None:
    from transformers.loss.loss_rt_detr import RTDetrLoss

    targets = [
        {
            "labels": torch.tensor([1, 0, 2]),
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2], [0.5, 0.5, 0.6, 0.7]]),
        },
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.4, 0.6, 0.1, 0.3]])},
    ]
    model = create_model("rtdetr_r18vd", num_classes=3).train()
    out = model(torch.rand(3, 3, 160, 192), targets)
    ours = RTDETRCriterion(3)(out, targets)

    cfg = transformers.RTDetrConfig(num_labels=3)
    n = model.num_decoder_layers
    hf_out = {
        "logits": out["pred_logits"],
        "pred_boxes": out["pred_boxes"],
        # HF (v1 layout) appends the encoder proposals as the last auxiliary output
        "auxiliary_outputs": [
            {"logits": a["pred_logits"], "pred_boxes": a["pred_boxes"]}
            for a in out["aux_outputs"] + out["enc_aux_outputs"]
        ],
        "dn_auxiliary_outputs": [
            {"logits": a["pred_logits"], "pred_boxes": a["pred_boxes"]} for a in out["dn_aux_outputs"]
        ],
        "denoising_meta_values": out["dn_meta"],
    }
    hf_targets = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    theirs = RTDetrLoss(cfg)(hf_out, hf_targets)
    renamed = {k.replace("_enc_0", f"_aux_{n - 1}"): v for k, v in ours.items()}
    assert set(renamed) == set(theirs)
    for k, v in theirs.items():
        assert torch.allclose(renamed[k], v, atol=1e-5, rtol=1e-5), (k, renamed[k].item(), v.item())
