"""The optional Ultralytics YOLO comparison, against a stand-in ``ultralytics`` module (the real package needs
torchvision, which has no CPU build here): thresholds are passed through, stages are reported, nothing is
downloaded."""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from rtdetr.bench.yolo import _raise_class_bias, benchmark_yolo


class _Head(nn.Module):
    """Like Ultralytics' ``Detect``: class branches ``cv3``, each ending in a Conv2d with a bias."""

    def __init__(self) -> None:
        super().__init__()
        self.cv3 = nn.ModuleList(nn.Sequential(nn.Identity(), nn.Conv2d(3, 2, 1)) for _ in range(2))
        for branch in self.cv3:
            nn.init.zeros_(branch[-1].weight)
            nn.init.constant_(branch[-1].bias, -9.0)  # a fresh YOLO's prior: almost nothing above 0.001


class _Net(nn.Module):
    """Eval-mode output as Ultralytics gives it: ``([B, 4 + classes, anchors] with sigmoid scores, extra)``;
    per anchor a fixed spread of logits on top of the class bias."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.ModuleList([nn.Identity(), _Head()])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = torch.nn.functional.interpolate(x, size=(20, 20))
        logits = torch.cat([branch(x).flatten(2) for branch in self.model[-1].cv3], 2)  # [B, 2, 800]
        logits = logits + torch.linspace(-4.0, 8.0, logits.shape[-1])
        return torch.cat([torch.zeros(x.shape[0], 4, logits.shape[-1]), logits.sigmoid()], 1), None


class _FakeYOLO:
    """Mimics ``ultralytics.YOLO``: ``model`` (the network), predict -> [Results] with ``speed`` (ms) and
    ``boxes``; NMS cost grows with the candidates above ``conf`` (scored by ``model``)."""

    calls: list[dict] = []

    def __init__(self, path: str) -> None:
        self.path = path
        self.model = _Net()

    def predict(self, frame: np.ndarray, conf: float, imgsz: int, device: str, verbose: bool) -> list:
        assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
        _FakeYOLO.calls.append({"conf": conf, "imgsz": imgsz, "device": device})
        time.sleep(0.002)  # a measurable wall time
        with torch.no_grad():
            scores = self.model.eval()(torch.rand(1, 3, imgsz, imgsz))[0][0, 4:].amax(0)
        n = int((scores > conf).sum())
        res = types.SimpleNamespace(speed={"preprocess": 1.0, "inference": 20.0, "postprocess": n / 100}, boxes=[0] * n)
        return [res]


@pytest.fixture()
def fake_ultralytics(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("ultralytics")
    mod.YOLO = _FakeYOLO  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ultralytics", mod)
    _FakeYOLO.calls.clear()


def test_thresholds_and_stages(fake_ultralytics: None, tmp_path: Path) -> None:
    weights = tmp_path / "yolov8n.pt"
    weights.write_bytes(b"weights")
    res = benchmark_yolo(weights, Image.new("RGB", (64, 48)), (0.001, 0.25), warmup=1, runs=3, imgsz=320)
    low, high = res["results"]
    assert (low["conf"], high["conf"]) == (0.001, 0.25)
    assert low["detections"] > high["detections"] > 0
    assert low["postprocess_nms"]["median_ms"] > high["postprocess_nms"]["median_ms"]
    assert low["inference"]["median_ms"] == 20.0 and low["end_to_end"]["median_ms"] > 0
    assert len(_FakeYOLO.calls) == 8 and {c["imgsz"] for c in _FakeYOLO.calls} == {320}


def test_never_downloads(fake_ultralytics: None) -> None:
    with pytest.raises(FileNotFoundError, match="never downloads"):
        benchmark_yolo("yolov8n.pt", Image.new("RGB", (8, 8)))


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import fails
    with pytest.raises(ImportError, match="pip install ultralytics"):
        benchmark_yolo("x.pt", Image.new("RGB", (8, 8)))


def test_cli_benchmark_with_yolo(fake_ultralytics: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rtdetr.cli import main
    from rtdetr.convert import save_model
    from rtdetr.models import create_model
    from tests.engine.conftest import TINY_MODEL

    ckpt = save_model(create_model("rtdetr_r18vd", num_classes=3, **TINY_MODEL), tmp_path / "m.pth")
    weights = tmp_path / "y.pt"
    weights.write_bytes(b"w")
    out = tmp_path / "bench.json"
    rc = main(["benchmark", str(ckpt), "--runs=2", "--warmup=1", "--yolo", str(weights), "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "post + NMS" in text and "0.001" in text
    data = json.loads(out.read_text())
    assert [r["conf"] for r in data["yolo"]["results"]] == [0.001, 0.25]
    assert data["results"][0]["postprocess"]["median_ms"] >= 0


def test_score_shift_loads_nms_and_counts_candidates(fake_ultralytics: None, tmp_path: Path) -> None:
    """A fresh YOLO scores almost nothing above 0.001; raising its class bias feeds NMS more candidates, and the
    count reported is the network's own (anchors whose best class score passes the threshold)."""
    weights = tmp_path / "yolov8s.yaml"
    weights.write_text("nc: 2")
    img = Image.new("RGB", (64, 48), (120, 60, 30))
    fresh = benchmark_yolo(weights, img, (0.001, 0.25), warmup=0, runs=2)
    loaded = benchmark_yolo(weights, img, (0.001, 0.25), warmup=0, runs=2, score_shift=4.0)
    assert fresh["score_shift"] == 0.0 and loaded["score_shift"] == 4.0
    c0, c1 = [r["results"][0]["candidates"] for r in (fresh, loaded)]
    assert 0 < c0 < c1 < 800  # 800 anchors, a spread of logits: more pass once the bias is raised
    assert loaded["results"][0]["detections"] == c1  # the predict path saw the raised bias too
    assert loaded["results"][1]["candidates"] < c1  # and 0.25 passes fewer
    assert loaded["results"][0]["postprocess_nms"]["median_ms"] > fresh["results"][0]["postprocess_nms"]["median_ms"]


def test_score_shift_needs_class_branches() -> None:
    net = nn.Module()
    net.model = nn.ModuleList([nn.Identity()])  # type: ignore[assignment]
    with pytest.raises(ValueError, match="no class branches"):
        _raise_class_bias(net, 1.0)
