"""The Detector protocol: every backend answers the same calls, and the benchmark waits for queued device work
inside each timed call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
