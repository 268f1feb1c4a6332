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
from PIL import Image

from rtdetr.bench.yolo import benchmark_yolo


class _FakeYOLO:
    """Mimics ``ultralytics.YOLO``: predict -> [Results] with ``speed`` (ms) and ``boxes``; NMS cost grows
    with the candidates above ``conf``."""

    scores = np.linspace(0.0005, 0.9, 2000)
    calls: list[dict] = []

    def __init__(self, path: str) -> None:
        self.path = path

    def predict(self, frame: np.ndarray, conf: float, imgsz: int, device: str, verbose: bool) -> list:
        assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
        _FakeYOLO.calls.append({"conf": conf, "imgsz": imgsz, "device": device})
        time.sleep(0.002)  # a measurable wall time
        n = int((self.scores >= conf).sum())
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
