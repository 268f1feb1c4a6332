"""``rtdetr benchmark --all-paths``: every CPU path runs the same trained-or-not model and the table says which
path ``precision="auto"`` takes on this CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtdetr.bench.paths import _generated_calibration, benchmark_paths, format_paths
from rtdetr.cli import main
from rtdetr.convert import save_model
from rtdetr.engine.hardware import choose_precision
from rtdetr.models import create_model


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = create_model("rtdetr_r18vd", num_classes=3, decoder={"num_layers": 1}, eval_spatial_size=(64, 64))
    return save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def test_all_paths_on_onnxruntime(tiny_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    res = benchmark_paths(tiny_checkpoint, threads=1, warmup=0, runs=1, work_dir=tmp_path, skip=("openvino", "compile"))
    names = [r["path"] for r in res["rows"]]
    assert names == [
        "pytorch eager fp32",
        "pytorch fused fp32 + channels_last",
        "pytorch fused bf16 + channels_last",
        "onnxruntime fp32",
        "onnxruntime int8",
    ]
    assert res["rows"][0]["vs_eager"] == 1.0 and all(r["end_to_end_ms"] > 0 for r in res["rows"])
    assert res["fastest"] in names and res["image_size"] == [64, 64]
    assert "generated" in res["rows"][-1]["note"]  # int8 calibrated on generated images says so
    assert res["auto"]["precision"] == choose_precision("auto", "cpu")[0]
    assert res["cpu"]["class"] and "key_flags" in res["cpu"]
    assert (tmp_path / "model_int8.onnx").is_file() and len(list((tmp_path / "calib").glob("*.jpg"))) == 16
    table = format_paths(res)
    assert all(n in table for n in names) and "precision='auto' runs" in table


def test_generated_calibration_images_are_not_blank(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    folder = _generated_calibration(tmp_path, n=2)
    arr = np.asarray(Image.open(folder / "calib_00.jpg"))
    assert arr.shape == (480, 640, 3) and arr.std() > 20  # objects on a background, not a flat image


def test_cli_refuses_what_all_paths_cannot_do(tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit, match="exports the graphs itself"):
        main(["benchmark", "model.onnx", "--all-paths"])
    with pytest.raises(SystemExit, match="batch 1"):
        main(["benchmark", str(tiny_checkpoint), "--all-paths", "--batch", "4"])


def test_cli_states_the_chosen_precision(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    assert main(["benchmark", str(tiny_checkpoint), "--runs", "1", "--warmup", "0", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    precision, reason = choose_precision("auto", "cpu")
    assert f"pytorch on cpu: {precision}, channels_last ({reason})" in err
    assert json.loads(out.read_text())["precision"] == precision


def test_all_paths_at_another_size_export_the_graphs_at_it(tiny_checkpoint: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    res = benchmark_paths(
        tiny_checkpoint, threads=1, warmup=0, runs=1, work_dir=tmp_path, image_size=(32, 96),
        skip=("openvino", "int8", "bf16", "compile"),
    )  # fmt: skip
    assert res["image_size"] == [32, 96] and [r["path"] for r in res["rows"]][-1] == "onnxruntime fp32"
    dims = onnx.load(str(tmp_path / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][2:] == [32, 96]


def test_all_paths_under_an_isa_cap_say_so(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU the bf16 row would raise (PyTorch packs bf16 weights for
    AVX-512 there): it is left out, and the table names the cap and that ONNX Runtime ignores it."""
    from rtdetr.engine import hardware

    text = "model name\t: Test\nflags\t\t: avx avx2 fma avx512f avx512_bf16 avx512_vnni amx_bf16\n"
    capped = hardware.apply_isa_cap(hardware.parse_cpuinfo(text, 2), {}, "AVX2")
    monkeypatch.setattr(hardware, "cpu_info", lambda: capped)
    monkeypatch.setattr("rtdetr.bench.paths.cpu_info", lambda: capped)
    said: list[str] = []
    res = benchmark_paths(
        tiny_checkpoint, threads=1, warmup=0, runs=1, skip=("openvino", "onnxruntime", "compile"), log=said.append
    )
    assert [r["path"] for r in res["rows"]] == ["pytorch eager fp32", "pytorch fused fp32 + channels_last"]
    assert any("left out" in s and "ATEN_CPU_CAPABILITY=avx2" in s for s in said)
    assert res["cpu"]["isa_cap"] == "ATEN_CPU_CAPABILITY=avx2" and res["auto"]["precision"] == "fp32"
    table = format_paths(res)
    assert "(avx2 under ATEN_CPU_CAPABILITY=avx2;" in table and "ONNX Runtime ignores it" in table


def test_a_path_that_fails_here_is_a_row_and_the_others_are_timed(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenVINO under ONEDNN_MAX_CPU_ISA=AVX2 on an AMX Xeon refused the model ("Supported primitive descriptors
    list is empty for node: /model/backbone/MaxPool") and the whole table was lost: now that row says so."""
    pytest.importorskip("onnxruntime")
    from rtdetr.export import runtime

    real = runtime.OnnxRuntimeDetector.__init__

    def refuse_int8(self: object, path: str | Path, *args: object, **kwargs: object) -> None:
        if "int8" in str(path):
            raise RuntimeError(f"{path}: cannot compile this model (primitive descriptors list is empty)")
        real(self, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime.OnnxRuntimeDetector, "__init__", refuse_int8)
    res = benchmark_paths(
        tiny_checkpoint, threads=1, warmup=0, runs=1, work_dir=tmp_path, skip=("openvino", "bf16", "compile")
    )
    rows = {r["path"]: r for r in res["rows"]}
    assert list(rows) == ["pytorch eager fp32", "pytorch fused fp32 + channels_last", "onnxruntime fp32",
                          "onnxruntime int8"]  # fmt: skip
    failed = rows["onnxruntime int8"]
    assert failed["end_to_end_ms"] is None and failed["vs_eager"] is None and "primitive descriptors" in failed["note"]
    assert rows["onnxruntime fp32"]["end_to_end_ms"] > 0 and res["fastest"] != "onnxruntime int8"
    line = next(ln for ln in format_paths(res).splitlines() if ln.startswith("onnxruntime int8"))
    assert "failed" in line and "primitive descriptors" in line
    json.dumps(res)  # -o writes it


def test_all_paths_time_the_compiled_model_after_compiling_it(tiny_checkpoint: Path, compile_calls: list) -> None:
    """The compiled row runs in the precision auto picks, with inductor's freezing, and its first call (the one
    that compiles) is a warm-up even when none is asked for. Through a stand-in for torch.compile."""
    res = benchmark_paths(tiny_checkpoint, threads=1, warmup=0, runs=2, skip=("bf16", "onnxruntime", "openvino"))
    auto = choose_precision("auto", "cpu")[0]
    row = res["rows"][-1]
    assert row["path"] == f"pytorch compiled {auto} + channels_last" and row["end_to_end_ms"] > 0
    assert row["how"] == f'precision="{auto}", compile="default"' and "warm-up" in row["note"]
    # the network timed (1 warm-up + 2 runs), one call for the post-processing's input, end to end (1 + 2): with
    # no warm-up it would be 5, and the first timed call would hold the compiling
    assert [c.freezing for c in compile_calls] == [True] * 7
