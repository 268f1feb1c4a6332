"""CPU fast paths: bf16 autocast + channels_last, int8 ONNX, OpenVINO."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rtdetr import RTDETR
from rtdetr.engine.backend import FastPath
from rtdetr.engine.predictor import Predictor
from rtdetr.export import OnnxRuntimeDetector, compare_detections, export_onnx, quantize_onnx_int8
from tests.export.test_onnx import _model


def test_bf16_channels_last_predictions_track_fp32() -> None:
    model = _model()
    img = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    ref = Predictor(model, ["a", "b", "c"], (96, 128), conf=0.0, max_det=10)(img)[0]
    fast = Predictor(model, ["a", "b", "c"], (96, 128), conf=0.0, max_det=10, precision="bf16", channels_last=True)(
        img
    )[0]
    assert fast.scores.dtype == torch.float32 and len(fast) == len(ref) == 10
    diff = compare_detections(
        (ref.labels[None].numpy(), ref.boxes[None].numpy(), ref.scores[None].numpy()),
        (fast.labels[None].numpy(), fast.boxes[None].numpy(), fast.scores[None].numpy()),
    )
    assert diff[0] < 0.05  # bf16 keeps ~3 significant digits
    with pytest.raises(ValueError, match="precision must be"):
        FastPath("int4")
    with pytest.raises(ValueError, match="fp16 inference needs a CUDA device"):
        FastPath("fp16", device="cpu")


def test_int8_and_openvino(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    onnx_path = tmp_path / "m.onnx"
    export_onnx(model, onnx_path, num_top_queries=20, class_names=["a", "b", "c"], check=False)
    rng = np.random.default_rng(0)
    calib = [Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)) for _ in range(4)]
    with pytest.raises(ValueError, match="needs calibration images"):
        quantize_onnx_int8(onnx_path, tmp_path / "q.onnx", [], (96, 128))
    q = quantize_onnx_int8(onnx_path, tmp_path / "q.onnx", calib, (96, 128))
    x = rng.random((1, 3, 96, 128), dtype=np.float32)
    sizes = np.array([[128, 96]], dtype=np.int64)
    fp32 = OnnxRuntimeDetector(onnx_path).run(x, sizes)
    int8 = OnnxRuntimeDetector(q).run(x, sizes)
    assert int8[1].shape == fp32[1].shape == (1, 20, 4)
    # what predict/serve say they run: the int8 graph said "fp32 (fixed at export)"
    assert (OnnxRuntimeDetector(q).precision, OnnxRuntimeDetector(onnx_path).precision) == ("int8", "fp32")
    assert OnnxRuntimeDetector(q).class_input == 3  # quantization keeps the class_mask input and its default
    import onnx

    def precision_key(path: Path) -> list[str]:
        return [p.value for p in onnx.load(str(path), load_external_data=False).metadata_props if p.key == "precision"]

    assert precision_key(onnx_path) == ["fp32"] and precision_key(q) == ["int8"]  # read without scanning the graph
    foreign = onnx.load(str(q))  # an int8 graph quantized elsewhere: no such key, found by its operators
    kept = [(p.key, p.value) for p in foreign.metadata_props if p.key != "precision"]
    del foreign.metadata_props[:]
    for k, v in kept:
        foreign.metadata_props.add(key=k, value=v)
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    assert OnnxRuntimeDetector(tmp_path / "foreign.onnx").precision == "int8"
    assert q.stat().st_size < 0.6 * onnx_path.stat().st_size  # weights stored as int8
    ops = [n.op_type for n in onnx.load(str(q)).graph.node]
    assert ops.count("QuantizeLinear") >= ops.count("Conv") > 0  # every convolution's input is quantized
    ds, _, agree = compare_detections(fp32, int8)
    assert 0 < ds < 0.05 and agree >= 0.9  # int8 really runs (scores move a little), classes stay

    # the decoder layers' matrix products stay fp32 (their int8 cost 0.6 AP on BCCD), value projections do not
    def quantized(path: Path) -> dict[str, bool]:
        """Each Conv/MatMul/Gemm: whether its weight input comes through a DequantizeLinear."""
        graph = onnx.load(str(path)).graph
        dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        return {n.name: n.input[1] in dq for n in graph.node if n.op_type in ("Conv", "MatMul", "Gemm")}

    mixed = quantized(q)
    layers = {k: v for k, v in mixed.items() if "/decoder/decoder/" in k}
    kept = {k for k, v in layers.items() if not v}
    assert kept and all("value_proj" not in k for k in kept)
    assert any("sampling_offsets" in k for k in kept) and any("dec_score_head" in k for k in kept)
    assert all(v for k, v in layers.items() if "value_proj" in k)
    assert all(v for k, v in mixed.items() if "/decoder/decoder/" not in k)  # backbone, encoder, encoder heads
    everything = quantized(quantize_onnx_int8(onnx_path, tmp_path / "q_all.onnx", calib, (96, 128), decoder_fp32=False))
    assert all(everything.values())

    # weights in 7 bits: 8-bit ones saturate the int16 pair sums of a CPU without VNNI (BCCD AP 0.446 -> 0.25 on a
    # Zen 3); the weight tensors reach the 7-bit bound and none passes it, where full-range ones do
    def weight_bound(path: Path) -> int:
        graph = onnx.load(str(path)).graph
        ints = {
            i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8
        }
        weights = [ints[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in ints]
        assert len(weights) >= ops.count("Conv")
        return max(int(np.abs(w.astype(np.int32)).max()) for w in weights)

    assert 60 <= weight_bound(q) <= 64
    full = quantize_onnx_int8(onnx_path, tmp_path / "q_full.onnx", calib, (96, 128), reduce_range=False)
    assert weight_bound(full) > 120

    pytest.importorskip("openvino", reason="OpenVINO tests need the 'openvino' extra")
    from rtdetr.export import OpenVinoDetector, to_openvino

    xml = to_openvino(onnx_path, tmp_path / "ov")
    det = OpenVinoDetector(xml, threads=1, precision="f32")
    assert det.class_names == ["a", "b", "c"] and det.image_size == (96, 128)
    ds, db, agree = compare_detections(fp32, det.run(x, sizes))
    assert ds < 1e-3 and agree == 1.0
    with pytest.raises(FileNotFoundError, match="no such OpenVINO model"):
        OpenVinoDetector(tmp_path / "none.xml")
    (tmp_path / "alone").mkdir()  # the .xml copied without its .bin: said so (was "core.cpp:84:")
    alone = Path(shutil.copy(xml, tmp_path / "alone"))
    with pytest.raises(FileNotFoundError, match=r"alone/m.xml: its weights m.bin are not beside it .* copy both"):
        OpenVinoDetector(alone)
    alone.with_suffix(".bin").write_bytes(b"\0" * 16)  # not an IR's weights, nor an IR
    alone.write_text("<notes>not a model</notes>")
    with pytest.raises(RuntimeError, match=r"alone/m.xml: OpenVINO cannot compile this model \(Unable to read"):
        OpenVinoDetector(alone)
    from rtdetr.engine import hardware
    from rtdetr.export import runtime

    capped = hardware.apply_isa_cap(
        hardware.CpuInfo("x", frozenset({"avx2", "avx512f"}), 2), {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2"
    )
    monkeypatch.setattr(runtime, "cpu_info", lambda: capped)  # under it an AMX Xeon refused the model's MaxPool
    with pytest.raises(
        RuntimeError, match=r"\(Unable to read.*\); ONEDNN_MAX_CPU_ISA=AVX2 is set, under which .* unset it$"
    ):
        OpenVinoDetector(alone)
    from rtdetr.convert.summary import describe_export, format_summary  # `rtdetr info m.xml` / `m.onnx`

    for path, origin in ((xml, "OpenVINO IR"), (onnx_path, "ONNX")):
        info = describe_export(path)
        assert (info["origin"], info["variant"], info["class_names"], info["image_size"]) == (
            origin, "rtdetrv2_r18vd", ["a", "b", "c"], [96, 128]
        )  # fmt: skip
        assert "input size            128x96" in format_summary(info)  # WIDTHxHEIGHT, as --size takes it
        assert info["size_mb"] > 0
        assert "  decoder               runs 3 of 3 layers (fixed at export)\n" in format_summary(info)
        assert "  detections            at most 20 per image\n" in format_summary(info)
        assert "  class filter          inside the graph, over every query (class_mask input)\n" in format_summary(info)
    # a truncated decoder baked into the graph is what `rtdetr info` says, for the graph and its IR
    shallow = export_onnx(model, tmp_path / "d1.onnx", num_top_queries=7, decoder_depth=1, check=False).path
    for path in (shallow, to_openvino(shallow, tmp_path / "ov1")):
        info = describe_export(path)
        assert (info["decoder_depth"], info["decoder_layers"], info["max_det"]) == (1, 3, 7)
        assert "runs 1 of 3 layers (fixed at export)" in format_summary(info)
        det = OnnxRuntimeDetector(path) if str(path).endswith(".onnx") else OpenVinoDetector(path)
        det.set_decoder_depth(1)  # the depth it runs: accepted (`rtdetr predict d1.onnx --decoder-depth 1`)
        with pytest.raises(ValueError, match=r"this graph runs 1 decoder layer; .* --decoder-depth 2\)"):
            det.set_decoder_depth(2)
        assert (det.decoder_depth, det.decoder_layers, det.exported) == (1, 3, True)  # were (None, None)
        assert RTDETR(path).info()["decoder_depth"] == 1
    # the service says and takes the graph's depth (it refused any depth of a graph, and /info said null)
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from rtdetr.serve.app import create_app

    with TestClient(create_app(RTDETR(shallow))) as client:
        info = client.get("/info").json()
        assert (info["decoder_depth"], info["decoder_layers"], info["decoder_fixed"]) == (1, 3, True)
        png = io.BytesIO()
        Image.new("RGB", (64, 48), (90, 120, 150)).save(png, "PNG")
        ok = client.post("/predict?conf=0&decoder_depth=1", content=png.getvalue())
        assert ok.status_code == 200 and ok.json()["decoder_depth"] == 1
        refused = client.post("/predict?conf=0&decoder_depth=2", content=png.getvalue())
        assert refused.status_code == 400 and "this graph runs 1 decoder layer" in refused.json()["detail"]


def test_cli_export_int8_and_openvino(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rtdetr.cli import main
    from rtdetr.convert import save_model

    ckpt = save_model(_model(), tmp_path / "m.pth", extra={"class_names": ["a", "b", "c"]})
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8)).save(calib / f"{i}.jpg")
    assert (
        main(
            [
                "export",
                str(ckpt),
                "-o",
                str(tmp_path / "m.onnx"),
                "--int8",
                "--calib",
                str(calib),
                "--format",
                "openvino",
                "--max-det",
                "10",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "m_int8.onnx" in out and (tmp_path / "m_int8.onnx").is_file()
    assert (tmp_path / "m_openvino" / "m.xml").is_file()
    xml8 = tmp_path / "m_int8_openvino" / "m_int8.xml"  # the int8 graph as OpenVINO IR (runs in int8 there)
    assert xml8.is_file() and str(xml8) in out
    from rtdetr.api import RTDETR
    from rtdetr.convert.summary import describe_export, format_summary

    r8 = RTDETR(xml8).predict(np.zeros((40, 50, 3), np.uint8), conf=0.0)[0]
    assert len(r8) == 10 and r8.names == ["a", "b", "c"]
    ov8 = RTDETR(xml8)
    assert "  precision             int8\n" in format_summary(describe_export(xml8))  # rtdetr info m_int8.xml
    assert describe_export(tmp_path / "m_int8.onnx")["precision"] == "int8"
    assert describe_export(tmp_path / "m.onnx")["precision"] == "fp32"
    assert ov8.precision == "int8" and ov8.precision_reason.startswith("quantized at export; its other layers in ")
    assert main(["export", str(ckpt), "--int8"]) == 1
    assert "needs calibration images" in capsys.readouterr().err
    # what cannot work is said before the ONNX graph is exported and checked (minutes for a large model), and
    # nothing is left behind: a calibration folder without images, OpenVINO missing
    early = tmp_path / "early.onnx"
    (tmp_path / "no_images").mkdir()
    assert main(["export", str(ckpt), "-o", str(early), "--int8", "--calib", str(tmp_path / "no_images")]) == 1
    assert "no_images: no images in this folder, and not a dataset" in capsys.readouterr().err and not early.exists()
    import importlib.util

    real_find_spec = importlib.util.find_spec
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else real_find_spec(n, *a))
        assert main(["export", str(ckpt), "-o", str(early), "--format", "openvino"]) == 1
    assert "pip install 'rtdetr[openvino]'" in capsys.readouterr().err and not early.exists()
    best = tmp_path / "run" / "best.pth"
    best.parent.mkdir()
    best.write_bytes(ckpt.read_bytes())
    assert main(["export", str(best.parent), "--max-det", "10", "--no-check"]) == 0  # no -o: beside the checkpoint
    assert best.with_suffix(".onnx").is_file() and f"wrote {best.with_suffix('.onnx')}" in capsys.readouterr().out
    # -o ending in .xml: the IR goes exactly there (it went to <stem>_openvino/ whatever -o said)
    ir = tmp_path / "ir" / "det.xml"
    assert main(["export", str(ckpt), "-o", str(ir), "--format", "openvino", "--max-det", "10"]) == 0
    assert ir.is_file() and ir.with_suffix(".bin").is_file() and not (tmp_path / "ir" / "det_openvino").exists()
    assert f"wrote {ir}" in capsys.readouterr().out
    assert len(RTDETR(ir).predict(np.zeros((40, 50, 3), np.uint8), conf=0.0)[0]) == 10
    assert RTDETR(ir).precision in ("fp32", "bf16")  # the fp32 graph, in OpenVINO's precision for this CPU
