"""Parity against HF transformers' RT-DETR and RT-DETRv2 (the in-repo oracle), litgpt style: build the
reference with random weights from a local config, convert its weights with our converter, compare outputs.
Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rtdetr.convert import hf_to_official, load_model, load_state_dict_into, model_config_from_hf
from rtdetr.models import build_model

transformers = pytest.importorskip("transformers", reason="HF parity tests need the 'hf-parity' extra")
pytestmark = pytest.mark.parity

TOL = 1e-4


def _hf_model(version: str, depth: int, **extra):  # noqa: ANN003, ANN202
    backbone = {
        18: dict(hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic"),
        50: dict(),
    }[depth]
    bb = transformers.RTDetrResNetConfig(out_features=["stage2", "stage3", "stage4"], **backbone)
    kw = dict(encoder_in_channels=[128, 256, 512], hidden_expansion=0.5, decoder_layers=3) if depth == 18 else {}
    cfg_cls, model_cls = {
        "v1": (transformers.RTDetrConfig, transformers.RTDetrForObjectDetection),
        "v2": (transformers.RTDetrV2Config, transformers.RTDetrV2ForObjectDetection),
    }[version]
    cfg = cfg_cls(backbone_config=bb, use_pretrained_backbone=False, num_labels=7, **kw, **extra)
    model = model_cls(cfg).eval()
    with torch.no_grad():  # move every weight and statistic off its structured init so mistakes show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                b.normal_(0.0, 0.1)
    return model


def _compare(hf, ours, x: torch.Tensor) -> tuple[float, float]:  # noqa: ANN001
    with torch.no_grad():
        ref = hf(pixel_values=x)
        out = ours(x)
    return (
        (ref.logits - out["pred_logits"]).abs().max().item(),
        (ref.pred_boxes - out["pred_boxes"]).abs().max().item(),
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("depth", [18, 50])
def test_converted_weights_match_hf(version: str, depth: int) -> None:
    hf = _hf_model(version, depth)
    cfg = model_config_from_hf(hf.config.to_dict())
    assert cfg.name == f"{'rtdetrv2' if version == 'v2' else 'rtdetr'}_r{depth}vd" and cfg.num_classes == 7
    ours = build_model(cfg).eval()
    assert load_state_dict_into(ours, hf_to_official(hf.state_dict())).ok
    for size in [(320, 320), (256, 352)]:  # square and non-square
        dl, db = _compare(hf, ours, torch.rand(2, 3, *size))
        assert dl < TOL and db < TOL, (size, dl, db)


def test_v2_discrete_sampling_matches_hf() -> None:
    hf = _hf_model("v2", 18, decoder_method="discrete", decoder_n_points=3)
    cfg = model_config_from_hf(hf.config.to_dict())
    assert cfg.decoder.cross_attn_method == "discrete" and cfg.decoder.num_points == (3, 3, 3)
    ours = build_model(cfg).eval()
    load_state_dict_into(ours, hf_to_official(hf.state_dict()))
    dl, db = _compare(hf, ours, torch.rand(1, 3, 288, 352))
    assert dl < TOL and db < TOL


def test_safetensors_directory_loads_end_to_end(tmp_path: Path) -> None:
    hf = _hf_model("v2", 18)
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path / "model.safetensors").eval()
    assert ours.config.name == "rtdetrv2_r18vd"
    dl, db = _compare(hf, ours, torch.rand(1, 3, 320, 320))
    assert dl < TOL and db < TOL


def test_hf_converter_rejects_unknown_keys() -> None:
    sd = {
        "model.backbone.model.embedder.embedder.0.convolution.weight": torch.zeros(1),
        "model.mystery": torch.zeros(1),
    }
    with pytest.raises(ValueError, match="model.mystery"):
        hf_to_official(sd)
