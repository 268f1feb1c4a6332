"""The Detector protocol: every backend answers the same calls, and the benchmark waits for queued device work
inside each timed call."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from rtdetr import RTDETR
from rtdetr.bench.latency import benchmark_detector
from rtdetr.engine.backend import Detector, TorchDetector, as_detector
from rtdetr.models import create_model
from tests.engine.conftest import TINY_MODEL


def test_torch_detector_follows_the_protocol() -> None:
    model = create_model("rtdetr_r18vd", num_classes=3, **TINY_MODEL).eval()
    det = as_detector(model)
    assert isinstance(det, TorchDetector) and isinstance(det, Detector) and as_detector(det) is det
    assert det.kind == "pytorch" and det.num_classes == 3 and det.image_size == (64, 64)
    assert det.decoder_layers == 2 and det.decoder_depth == 2
    x, sizes = torch.rand(2, 3, 64, 64), torch.tensor([[100, 80], [64, 64]])
    dets = det.detect(x, sizes, max_det=5)
    assert [d["boxes"].shape for d in dets] == [(5, 4), (5, 4)]
    assert dets[0]["boxes"][:, 0::2].max() <= 100 and dets[0]["boxes"][:, 1::2].max() <= 80
    det.set_decoder_depth(1)
    assert model.decoder_depth == 1
    with pytest.raises(TypeError, match="expected an RTDETR model or a Detector"):
        as_detector("model.pth")


def test_class_filter_per_image_equals_each_image_alone() -> None:
    """One entry per image (ids, or None for every class) filters each image as a call with its ids alone would
    (the service runs mixed class filters in one batch this way)."""
    torch.manual_seed(0)
    model = create_model("rtdetr_r18vd", num_classes=3, **TINY_MODEL).eval()
    det = as_detector(model)
    x, sizes = torch.rand(3, 3, 64, 64), torch.tensor([[100, 80], [64, 64], [30, 90]])
    with torch.no_grad():
        got = det.detect(x, sizes, 6, [{2}, None, [0, 1]])
        alone = [det.detect(x[i : i + 1], sizes[i : i + 1], 6, c)[0] for i, c in enumerate([{2}, None, [0, 1]])]
    assert got[0]["labels"].tolist() == [2] * 6 and set(got[2]["labels"].tolist()) <= {0, 1}
    for g, a in zip(got, alone):
        assert torch.equal(g["labels"], a["labels"]) and torch.allclose(g["scores"], a["scores"], atol=1e-6)
        assert torch.allclose(g["boxes"], a["boxes"], atol=1e-4)


def test_fused_copy_gives_the_same_detections() -> None:
    model = create_model("rtdetr_r18vd", num_classes=3, **TINY_MODEL).eval()
    plain, fused = TorchDetector(model), TorchDetector(model, fuse=True)
    x, sizes = torch.rand(1, 3, 64, 64), torch.tensor([[64, 64]])
    with torch.no_grad():
        a, b = plain.detect(x, sizes), fused.detect(x, sizes)
    assert fused.module() is not model and fused.module().deployed
    assert torch.allclose(a[0]["scores"], b[0]["scores"], atol=1e-5)


def test_benchmark_synchronises_inside_each_timed_call() -> None:
    det = RTDETR("rtdetr_r18vd", num_classes=3, **TINY_MODEL)
    calls = {"sync": 0}
    det.backend.synchronize = lambda: calls.__setitem__("sync", calls["sync"] + 1)  # type: ignore[method-assign]
    from PIL import Image

    image = Image.fromarray(np.zeros((48, 64, 3), np.uint8))
    res = benchmark_detector(det, (1,), warmup=1, runs=3, image=image)
    # model, post-processing and end-to-end timings: every warm-up and timed call waits for the device
    assert calls["sync"] >= 3 * (1 + 3)
    assert res["backend"] == "pytorch" and res["results"][0]["model"]["median_ms"] > 0


@pytest.mark.parametrize("name", ["rtdetr_r18vd", "rtdetrv2_r18vd_dsp", "rtdetr_hgnetv2_l"])
def test_fused_copy_holds_its_weights_in_the_autocast_dtype_with_the_same_outputs(name: str) -> None:
    """The fused copy's convolution and linear weights are cast to bf16 once (autocast cast them on every call):
    outputs bit-identical to autocast casting them (every weight perturbed; v1, v2 with discrete sampling, an
    HGNetv2 backbone), and the user's model keeps fp32 weights. Casting any other parameter (a norm's, an
    embedding's) changes the outputs."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **TINY_MODEL).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    fused = TorchDetector(model, precision="bf16", channels_last=True, fuse=True)
    layers = [m for m in fused.module().modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers and all(m.weight.dtype == torch.bfloat16 for m in layers)
    same = copy.deepcopy(fused.module())
    for m in same.modules():  # the fp32 weights that autocast casts on each call
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.float()
    reference = TorchDetector(same, precision="bf16", channels_last=True)  # deployed: run as it is
    x, sizes = torch.rand(2, 3, 64, 64), torch.tensor([[64, 64], [80, 60]])
    with torch.no_grad():
        a, b = fused.infer(x, sizes), reference.infer(x, sizes)
    assert reference.module().backbone is same.backbone and next(same.parameters()).dtype == torch.float32
    assert torch.equal(a["pred_logits"], b["pred_logits"]) and torch.equal(a["pred_boxes"], b["pred_boxes"])
    assert all(p.dtype == torch.float32 for p in model.parameters())
