"""``rtdetr benchmark``: the split timings run the network at the input size asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import Tensor

from rtdetr.cli import main
from rtdetr.convert import save_model
from rtdetr.engine.backend import TorchDetector
from rtdetr.models import create_model


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = create_model("rtdetr_r18vd", num_classes=3, decoder={"num_layers": 1}, eval_spatial_size=(64, 64))
    return save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def _shapes_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    seen: list[tuple[int, ...]] = []
    infer = TorchDetector.infer

    def spy(self: TorchDetector, images: Tensor, sizes: Tensor) -> dict[str, Tensor]:
        seen.append(tuple(images.shape))
        return infer(self, images, sizes)

    monkeypatch.setattr(TorchDetector, "infer", spy)
    return seen


@pytest.mark.parametrize(("size", "hw"), [([], (64, 64)), (["--size", "96x32"], (32, 96))])
def test_benchmark_runs_at_the_size_asked_for(
    tiny_checkpoint: Path,
    size: list[str],
    hw: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    seen = _shapes_seen(monkeypatch)
    argv = ["benchmark", str(tiny_checkpoint), "--runs", "1", "--warmup", "0", "--batch", "1", "2", "--json", *size]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["image_size"] == list(hw)
    assert {s[2:] for s in seen} == {hw} and {s[0] for s in seen} == {1, 2}  # every timed call, both batches


def test_an_exported_graph_is_timed_at_its_own_size_only(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "tiny.onnx"
    assert main(["export", str(tiny_checkpoint), "-o", str(onnx), "--no-check"]) == 0
    capsys.readouterr()
    assert main(["benchmark", str(onnx), "--runs", "1", "--warmup", "0", "--size", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == [64, 64]
    assert main(["benchmark", str(onnx), "--runs", "1", "--warmup", "0", "--size", "96"]) == 1
    assert "exported at 64x64 and runs only at that size" in capsys.readouterr().err


def test_a_compiled_model_is_timed_at_each_batch_size_given_in_any_order(
    tiny_checkpoint: Path, capsys: pytest.CaptureFixture, compile_calls: list
) -> None:
    """A compiled model runs a batch padded to a larger size it already compiled: timed largest first, batch 1
    would have been timed at batch 2. The sizes are timed smallest first."""
    argv = ["benchmark", str(tiny_checkpoint), "--runs", "1", "--warmup", "0", "--batch", "2", "1", "--json"]
    assert main([*argv, "--compile", "default"]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert "compiled (default): each batch size compiles at its first use" in err  # the wait is announced
    assert [r["batch"] for r in res["results"]] == [1, 2]
    assert {c.shape[0] for c in compile_calls} == {1, 2}  # batch 1 ran at 1, not padded to 2
