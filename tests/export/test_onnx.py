"""ONNX export of model + post-processor: checker, parity with PyTorch, dynamic batch, runtime backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rtdetr import RTDETR
from rtdetr.cli import main
from rtdetr.convert import save_model
from rtdetr.export import OnnxRuntimeDetector, compare_detections, export_onnx
from rtdetr.export.onnx import DeployModel
from rtdetr.models import PostProcessor, create_model

pytest.importorskip("onnxruntime", reason="export tests need the 'onnx' extra")


def _model():  # noqa: ANN202
    torch.manual_seed(0)
    m = create_model(
        "rtdetrv2_r18vd",
        num_classes=3,
        eval_spatial_size=[96, 128],
        encoder={"hidden_dim": 64, "dim_feedforward": 128},
        decoder={"feat_channels": [64, 64, 64], "hidden_dim": 64, "dim_feedforward": 128, "num_queries": 30},
    )
    with torch.no_grad():  # spread the encoder scores: random init leaves near-ties in the top-k ranking
        m.decoder.enc_score_head.weight.mul_(30)
    return m.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module, dict]:
    model = _model()
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    report = export_onnx(model, path, num_top_queries=20, class_names=["a", "b", "c"])
    return path, model, report.as_dict()


def test_export_report_and_parity(exported: tuple) -> None:
    path, model, report = exported
    assert report["image_size"] == (96, 128) and report["opset"] == 17
    assert report["label_agreement"] == 1.0 and report["max_score_diff"] < 1e-4 and report["max_box_diff_px"] < 1e-2
    assert not model.deployed  # the caller's model is untouched


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch_matches_pytorch(exported: tuple, batch: int) -> None:
    path, model, _ = exported
    ort = OnnxRuntimeDetector(path, threads=1)
    assert ort.class_names == ["a", "b", "c"] and ort.image_size == (96, 128)
    x = torch.rand(batch, 3, 96, 128)
    sizes = torch.tensor([[640, 480]] * batch)
    got = ort.run(x.numpy(), sizes.numpy())
    assert got[0].shape == (batch, 20) and got[1].shape == (batch, 20, 4)
    fused = DeployModel(model, PostProcessor(3, 20)).eval()
    with torch.no_grad():
        ref = tuple(t.numpy() for t in fused(x, sizes))
    ds, db, agree = compare_detections(ref, got)
    assert ds < 1e-4 and db < 0.05 and agree == 1.0


def test_compare_detections_is_order_insensitive() -> None:
    labels = np.array([[0, 1]])
    boxes = np.array([[[0, 0, 10, 10], [5, 5, 20, 20]]], dtype=np.float32)
    scores = np.array([[0.5, 0.5]], dtype=np.float32)
    swapped = (labels[:, ::-1], boxes[:, ::-1], scores[:, ::-1])
    assert compare_detections((labels, boxes, scores), swapped) == (0.0, 0.0, 1.0)


def test_facade_with_onnx_backend(exported: tuple, tmp_path: Path) -> None:
    path, _, _ = exported
    det = RTDETR(path)
    res = det.predict(np.zeros((50, 60, 3), np.uint8), conf=0.0)
    assert len(res[0]) == 20 and res[0].orig_size == (60, 50) and det.class_names == ["a", "b", "c"]
    with pytest.raises(ValueError, match="fixed at export"):
        det.predict(np.zeros((5, 5, 3), np.uint8), decoder_depth=1)
    with pytest.raises(ValueError, match="needs the PyTorch model"):
        det.train(data="x")
    # another input size: a clear error from predict and from val (val reached ONNX Runtime's own exception, a
    # traceback out of `rtdetr val m.onnx --size 320`); the graph's own size is fine
    Image.new("RGB", (60, 50)).save(tmp_path / "im.png")
    coco = {"images": [{"id": 1, "file_name": "im.png", "width": 60, "height": 50}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400,
                             "iscrowd": 0}],
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate("abc")]}  # fmt: skip
    (tmp_path / "val.json").write_text(json.dumps(coco))
    says = r"exported at 128x96 and runs only at that size; for 64x64 export the checkpoint again with --size"
    with pytest.raises(ValueError, match=says):
        det.predict(np.zeros((50, 60, 3), np.uint8), image_size=(64, 64))
    with pytest.raises(ValueError, match=says):
        det.val(tmp_path / "val.json", image_size=(64, 64))
    assert det.val(tmp_path / "val.json", image_size=(96, 128))["stats"]["AP"] >= 0
    graph = det.backend  # below the facade's check, ONNX Runtime's own error is a RuntimeError naming the file
    assert isinstance(graph, OnnxRuntimeDetector)
    with pytest.raises(RuntimeError, match=r"m.onnx: ONNX Runtime failed \(.*Got: 64 Expected: 96"):
        graph.run(np.zeros((1, 3, 64, 64), np.float32), np.array([[64, 64]]))


def test_graph_class_filter_keeps_those_classes_among_its_detections(exported: tuple) -> None:
    """An exported graph's top-k is inside it: a class filter keeps, per image, the detections of those classes
    among the graph's own (here 20), then cuts to max_det."""
    ort = OnnxRuntimeDetector(exported[0], threads=1)
    x, sizes = torch.rand(2, 3, 96, 128), torch.tensor([[640, 480], [100, 80]])
    every = ort.detect(x, sizes)
    for classes, max_det in (({1}, 2), ({0, 2}, 20), (set(), 5)):
        got = ort.detect(x, sizes, max_det, classes)
        for g, e in zip(got, every):
            keep = torch.tensor([int(lb) in classes for lb in e["labels"]], dtype=torch.bool)
            assert all(torch.equal(g[k], e[k][keep][:max_det]) for k in ("labels", "boxes", "scores"))
    assert [len(g["labels"]) for g in ort.detect(x, sizes, 2, {1})] == [
        min(2, int((e["labels"] == 1).sum())) for e in every
    ]
    for entries in ([{1}, None], [None, {1}], [{1}, {0, 2}]):  # one entry per image (None: every class)
        per_image = ort.detect(x, sizes, 3, entries)
        for i, c in enumerate(entries):
            alone = ort.detect(x[i : i + 1], sizes[i : i + 1], 3, c)[0]
            assert all(torch.equal(per_image[i][k], alone[k]) for k in alone), (entries, i)


def test_export_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset 15 lacks GridSample"):
        export_onnx(_model(), tmp_path / "x.onnx", opset=15)
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        OnnxRuntimeDetector(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="cannot load this model"):
        OnnxRuntimeDetector(bad)


def test_cli_export_and_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = save_model(_model(), tmp_path / "m.pth", extra={"class_names": ["a", "b", "c"]})
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "-o", str(out), "--max-det", "10"]) == 0
    text = capsys.readouterr().out
    assert "parity vs PyTorch" in text and out.is_file()
    assert (
        main(
            [
                "benchmark",
                str(out),
                "--runs",
                "2",
                "--warmup",
                "1",
                "--threads",
                "1",
                "-o",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["backend"] == "onnxruntime" and res["results"][0]["end_to_end"]["median_ms"] > 0
    assert main(["benchmark", str(ckpt), "--runs", "2", "--warmup", "1", "--batch", "1", "2"]) == 0
    assert "img/s" in capsys.readouterr().out
    # a wide input, as a 16:9 video wants it: --size WIDTHxHEIGHT fixes (height, width) = (64, 128) in the graph
    wide = tmp_path / "wide.onnx"
    assert main(["export", str(ckpt), "-o", str(wide), "--size", "128x64", "--max-det", "10"]) == 0
    assert "input 128x64)" in capsys.readouterr().out and RTDETR(wide).image_size == (64, 128)
    Image.new("RGB", (160, 90)).save(tmp_path / "wide.png")
    assert main(["predict", str(wide), str(tmp_path / "wide.png"), "--no-save", "--size", "128x64"]) == 0
    assert main(["predict", str(wide), str(tmp_path / "wide.png"), "--no-save", "--size", "64x128"]) == 1
    assert "exported at 128x64 and runs only at that size; for 64x128" in capsys.readouterr().err
