"""ONNX export of model + post-processor: checker, parity with PyTorch, dynamic batch, runtime backend."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from rtdetr import RTDETR
from rtdetr.cli import main
from rtdetr.convert import save_model
from rtdetr.engine.predictor import filter_detections
from rtdetr.export import OnnxRuntimeDetector, compare_detections, export_onnx
from rtdetr.export.onnx import DeployModel
from rtdetr.models import PostProcessor, create_model
from rtdetr.models.postprocess import class_mask
from tests.conftest import BENCHMARKS, load_benchmark

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


def _official_interface() -> dict:
    """The official export's interface, as ``benchmarks/official_export_parity.py`` recorded it from the official
    graphs of every variant (one and the same)."""
    recorded = json.loads((BENCHMARKS / "results_official_export_parity.json").read_text())["rows"]
    official = {json.dumps(r["official_interface"]) for r in recorded}
    assert len(recorded) >= 13 and len(official) == 1
    return json.loads(official.pop())


def test_graph_interface_is_the_official_exports(exported: tuple) -> None:
    """Code written for the official export (``tools/export_onnx.py``) runs our graph unchanged: the inputs a
    caller must feed and the outputs have the official names, element types and ranks, as
    ``benchmarks/official_export_parity.py`` recorded them from the official graphs (every variant alike; that
    script also compares the detections of both graphs on the same weights)."""
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(exported[0]), opts, providers=["CPUExecutionProvider"])
    assert load_benchmark("official_export_parity").interface(session) == _official_interface()


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


def _filtered_reference(model: torch.nn.Module, x: Tensor, sizes: Tensor, max_det: int, classes: Any) -> list:
    """The PyTorch model's detections under a class filter (the top ``max_det`` among those classes over all
    queries), those of other classes (score 0, where too few remain) dropped, as numpy ``(l, b, s)`` per image."""
    with torch.no_grad():
        dets = PostProcessor(3, max_det)(model(x), sizes, class_mask(classes, 3, len(x)))
    per_image = classes if isinstance(classes, list) else [classes] * len(x)
    return [_as_numpy(filter_detections(d, 0.0, c)) for d, c in zip(dets, per_image)]


def _as_numpy(det: dict[str, Tensor]) -> tuple:
    return tuple(det[k].numpy() for k in ("labels", "boxes", "scores"))


def _same(a: tuple, b: tuple) -> bool:
    """One image's detections alike as sets (scores 1e-4, boxes 0.2 px of 640, every label)."""
    if len(a[0]) != len(b[0]):
        return False
    ds, db, agree = compare_detections(tuple(v[None] for v in a), tuple(v[None] for v in b))
    return ds < 1e-4 and db < 0.2 and agree == 1.0


def test_graph_class_filter_ranks_those_classes_over_every_query(exported: tuple, tmp_path: Path) -> None:
    """The graph takes a class filter inside it (its ``class_mask`` input), so that its top-k holds the best of
    those classes over every query, as the PyTorch model's does, not those of its own top-k that are of those
    classes; fed nothing there (a two-input caller), it ranks every class."""
    path, model, _ = exported
    ort = OnnxRuntimeDetector(path, threads=1)
    assert ort.class_input == 3
    x, sizes = torch.rand(2, 3, 96, 128), torch.tensor([[640, 480], [100, 80]])
    own = ort.run(x.numpy(), sizes.numpy())  # the graph's 20 best over all classes
    assert (own[0] == 0).sum(1).max() < 20  # so class 0's 20 best over its 30 queries are not all among them
    runtimes: list[Any] = [ort]
    if importlib.util.find_spec("openvino") is not None:
        from rtdetr.export import OpenVinoDetector, to_openvino

        ov = OpenVinoDetector(to_openvino(path, tmp_path / "ov"), threads=1, precision="f32")
        assert ov.class_input == 3
        runtimes.append(ov)
    cases = (({0}, 20), ({1, 2}, 7), ([{2}, None], 20), ([{0}, {2}], 5), ({0, 1, 2}, 20), (None, 20))
    for graph in runtimes:
        for classes, max_det in cases:
            got = graph.detect(x, sizes, max_det, classes)
            ref = _filtered_reference(model, x, sizes, max_det, classes)
            assert all(_same(_as_numpy(g), r) for g, r in zip(got, ref)), (graph.kind, classes, max_det)
        assert [len(d["labels"]) for d in graph.detect(x, sizes, 20, {0})] == [20, 20]
    # a graph exported for a fixed batch still takes one row of classes per image
    fixed = OnnxRuntimeDetector(
        export_onnx(model, tmp_path / "fixed.onnx", num_top_queries=20, dynamic_batch=False).path
    )
    got = fixed.detect(x, sizes, 20, [{0}, {2}])
    ref = _filtered_reference(model, x, sizes, 20, [{0}, {2}])
    assert all(_same(_as_numpy(g), r) for g, r in zip(got, ref))


def test_graph_without_class_input_filters_its_own_detections(exported: tuple, tmp_path: Path) -> None:
    """A graph exported before the ``class_mask`` input (two inputs): a class filter keeps, per image, the
    detections of those classes among the graph's own (here 20), then cuts to max_det."""
    import onnx

    proto = onnx.load(str(exported[0]))  # the input gone, its default left as a constant: the old graph
    kept = [i for i in proto.graph.input if i.name != "class_mask"]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    onnx.save(proto, str(tmp_path / "old.onnx"))
    ort = OnnxRuntimeDetector(tmp_path / "old.onnx", threads=1)
    assert ort.class_input is None
    from rtdetr.convert.summary import describe_export, format_summary  # rtdetr info old.onnx says so

    said = "  class filter          among its 20 detections (no class_mask input)\n"
    assert said in format_summary(describe_export(tmp_path / "old.onnx"))
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


def test_no_class_mask_export_is_the_official_interface(exported: tuple, tmp_path: Path) -> None:
    """``rtdetr export --no-class-mask``: every input of the graph is the official export's (no third input, no
    initializer a loader would warn about or refuse), ONNX Runtime loads it without a warning, and it gives the
    three-input graph's detections; a class filter keeps those classes among its own detections, and OpenVINO
    runs it without being fed a mask."""
    import subprocess
    import sys

    import onnx

    path, model, _ = exported
    ckpt = tmp_path / "tiny.pth"
    save_model(model, ckpt, extra={"class_names": ["a", "b", "c"]})
    two = tmp_path / "two.onnx"
    assert main(["export", str(ckpt), "-o", str(two), "--max-det", "20", "--no-class-mask"]) == 0
    proto = onnx.load(str(two))
    assert [i.name for i in proto.graph.input] == ["images", "orig_target_sizes"]
    assert "class_mask" not in {i.name for i in proto.graph.initializer}
    import onnxruntime

    session = onnxruntime.InferenceSession(str(two), providers=["CPUExecutionProvider"])
    assert session.get_overridable_initializers() == []  # every input, not only the required ones
    assert load_benchmark("official_export_parity").interface(session) == _official_interface()
    load = "import onnxruntime, sys; onnxruntime.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])"
    said = {g: subprocess.run([sys.executable, "-c", load, str(g)], capture_output=True, text=True).stderr
            for g in (path, two)}  # fmt: skip
    assert "class_mask" in said[path]  # ONNX Runtime's warning on the default, as a third-party loader sees it
    assert said[two] == ""
    x, sizes = torch.rand(2, 3, 96, 128), torch.tensor([[640, 480], [100, 80]])
    ort = OnnxRuntimeDetector(two, threads=1)
    assert ort.class_input is None and ort.class_names == ["a", "b", "c"]
    three = OnnxRuntimeDetector(path, threads=1).run(x.numpy(), sizes.numpy())
    assert all(np.array_equal(a, b) for a, b in zip(ort.run(x.numpy(), sizes.numpy()), three))
    every = ort.detect(x, sizes)
    for g, e in zip(ort.detect(x, sizes, 3, {1, 2}), every):
        keep = (e["labels"] == 1) | (e["labels"] == 2)
        assert all(torch.equal(g[k], e[k][keep][:3]) for k in ("labels", "boxes", "scores"))
    if importlib.util.find_spec("openvino") is not None:
        from rtdetr.export import OpenVinoDetector, to_openvino

        ov = OpenVinoDetector(to_openvino(two, tmp_path / "ov"), threads=1, precision="f32")
        assert ov.class_input is None
        got = ov.run(x.numpy(), sizes.numpy())
        assert compare_detections(three, got)[2] == 1.0


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
