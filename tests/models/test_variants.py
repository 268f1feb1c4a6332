"""Tests generated from the registry (timm style): every variant builds, trains a step on a small input with a
gradient reaching every trainable parameter, and matches the published size."""

from __future__ import annotations

import pytest
import torch

from rtdetr.bench.profile import count_parameters
from rtdetr.models import create_model, get_variant, list_models

TARGETS = [
    {
        "labels": torch.tensor([1, 0, 2]),
        "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.4], [0.2, 0.3, 0.1, 0.2], [0.7, 0.6, 0.2, 0.2]]),
    },
    {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
]


def _total(out: dict) -> torch.Tensor:
    """Touch every prediction the criterion will see: final, aux, encoder and denoising outputs."""
    groups = [out, *out["aux_outputs"], *out["enc_aux_outputs"], *out.get("dn_aux_outputs", [])]
    return sum(g["pred_logits"].sigmoid().mean() + g["pred_boxes"].mean() for g in groups)


@pytest.mark.parametrize("name", list_models())
def test_variant_forward_backward_every_param_gets_grad(name: str) -> None:
    model = create_model(name, num_classes=3).train()
    images = torch.rand(2, 3, 160, 128)
    out = model(images, TARGETS)
    n_layers = model.num_decoder_layers
    assert out["pred_logits"].shape == (2, 300, 3) and out["pred_boxes"].shape == (2, 300, 4)
    assert len(out["aux_outputs"]) == n_layers - 1 and len(out["dn_aux_outputs"]) == n_layers
    loss = _total(out)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    model.eval()
    with torch.no_grad():
        pred = model(torch.rand(1, 3, 100, 75))  # non-square, not a multiple of 32
    # fewer memory tokens than queries -> one query per token: 13*10 + 7*5 + 4*3 = 177
    assert pred["pred_boxes"].shape == (1, 177, 4) and set(pred) == {"pred_logits", "pred_boxes"}
    assert ((pred["pred_boxes"] >= 0) & (pred["pred_boxes"] <= 1)).all()


# The official READMEs' parameter counts (millions, truncated): R18/R34/R50-m/R50/R101 and HGNetv2-L/X.
PUBLISHED_PARAMS_M = {
    "r18vd": 20,
    "r34vd": 31,
    "r50vd_m": 36,
    "r50vd": 42,
    "r101vd": 76,
    "hgnetv2_l": 32,
    "hgnetv2_x": 67,
}


@pytest.mark.parametrize("name", list_models())
def test_parameter_count_matches_official_readme(name: str) -> None:
    arch = name.split("_", 1)[1].removesuffix("_dsp")
    params = count_parameters(create_model(name)) / 1e6
    assert int(params) == PUBLISHED_PARAMS_M[arch], (
        f"{name}: {params:.2f}M, official README {PUBLISHED_PARAMS_M[arch]}M"
    )
    assert get_variant(name).params_m == PUBLISHED_PARAMS_M[arch]


def test_frozen_parts_follow_official_settings() -> None:
    r18 = create_model("rtdetr_r18vd")
    assert all(p.requires_grad for p in r18.backbone.parameters())
    assert any(n.endswith("num_batches_tracked") for n in r18.backbone.state_dict())
    r50 = create_model("rtdetr_r50vd")
    assert not any(p.requires_grad for p in r50.backbone.conv1.parameters())  # freeze_at=0: stem only
    assert all(p.requires_grad for p in r50.backbone.res_layers.parameters())
    assert not any(n.endswith("num_batches_tracked") for n in r50.backbone.state_dict())  # FrozenBN


def test_unknown_variant_suggests_names() -> None:
    with pytest.raises(ValueError, match="did you mean rtdetr_r18vd"):
        create_model("rtdetr_r18")
