"""`rtdetr info <checkpoint>`: what a file holds, read without building the model, checked against the model
the file was made from (official layout, ours with training state) and against a broken file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rtdetr.cli import main
from rtdetr.convert import CheckpointError, save_model
from rtdetr.convert.summary import describe_checkpoint, format_summary
from rtdetr.models import create_model


def test_official_release_file(tmp_path: Path) -> None:
    src = create_model("rtdetrv2_r34vd", num_classes=7)
    state = src.state_dict()
    state["decoder.dec_score_head.3.bias"][0] = float("nan")  # one broken tensor, named
    path = tmp_path / "rtdetrv2_r34vd_120e_coco.pth"
    torch.save({"date": "2024-07-01", "ema": {"module": state, "updates": 10}}, path)
    info = describe_checkpoint(path)
    assert (info["origin"], info["weights_from"], info["variant"], info["num_classes"]) == (
        "official", "ema", "rtdetrv2_r34vd", 7
    )  # fmt: skip
    assert info["params_m"] == round(sum(p.numel() for p in src.parameters()) / 1e6, 2)
    assert (info["decoder_layers"], info["decoder_depth"], info["image_size"]) == (4, 4, [640, 640])
    assert info["non_finite_tensors"] == ["decoder.dec_score_head.3.bias"] and info["class_names"] is None
    text = format_summary(info)
    assert "official checkpoint (ema weights)" in text and "1 tensor(s) hold NaN or inf: decoder.dec_score_" in text
    assert "resumable" not in text  # not our training state


def test_our_training_checkpoint_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = create_model("rtdetr_r18vd", num_classes=3, eval_spatial_size=[320, 320], decoder={"eval_idx": 1})
    run = {"data": {"train": "d/train.json", "image_size": [320, 320]}, "train": {"epochs": 12, "lr": 0.001}}
    extra = {"class_names": ["a", "b", "c"], "epoch": 5, "global_step": 250, "train_time_s": 600.0,
             "best": {"ap": 0.4321, "epoch": 4}, "optimizer": {}, "run_config": run, "date": "2026-12-05"}  # fmt: skip
    path = save_model(model, tmp_path / "last.pth", extra)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    for line in ("ours checkpoint (model weights)", "classes               3: a, b, c", "input size            320x320",
                 "decoder               3 layers, runs 2 at inference", "trained               epoch 5, step 250, "
                 "10.0 min, saved 2026-12-05", "best AP               0.4321 (epoch 4)", "resumable             yes",
                 "data.train            d/train.json", "train.lr              0.001"):  # fmt: skip
        assert line in out, line
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["resumable"] and info["run"]["train.epochs"] == 12 and info["non_finite_tensors"] == []
    weights_only = save_model(model, tmp_path / "best.pth", {"class_names": ["a", "b", "c"], "epoch": 5})
    assert describe_checkpoint(weights_only)["resumable"] is False


def test_a_missing_or_foreign_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(tmp_path / "nothing.pth")]) == 1
    assert "nothing.pth: no such checkpoint file" in capsys.readouterr().err
    torch.save({"weights": {"w": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="no state dict found"):
        describe_checkpoint(tmp_path / "other.pth")


def test_a_folder_stands_for_its_model_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`rtdetr predict runs/train x.jpg`, `RTDETR("runs/train")`, `rtdetr info runs/train`: a run folder means its
    best.pth (else last.pth), an HF download its model.safetensors; an empty folder is one clear line."""
    from rtdetr import RTDETR
    from rtdetr.convert.checkpoint import checkpoint_file

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match="run: a folder without best.pth, last.pth, model.safetensors"):
        checkpoint_file(run)
    model = create_model("rtdetr_r18vd", num_classes=2, eval_spatial_size=[64, 64])
    save_model(model, run / "last.pth", {"class_names": ["x", "y"], "epoch": 2})
    assert checkpoint_file(run) == run / "last.pth"
    save_model(model, run / "best.pth", {"class_names": ["x", "y"], "epoch": 1})
    assert checkpoint_file(run) == run / "best.pth" and checkpoint_file(str(run / "last.pth")) == str(run / "last.pth")
    det = RTDETR(run, device="cpu")
    assert det.checkpoint == run / "best.pth" and det.class_names == ["x", "y"]
    from rtdetr.engine.warmstart import init_from_checkpoint  # --init-from runs/train

    torch.manual_seed(1)
    fresh = create_model("rtdetr_r18vd", num_classes=2, eval_spatial_size=[64, 64])
    init_from_checkpoint(fresh, str(run), partial=False)
    key = "decoder.dec_bbox_head.0.layers.0.weight"
    assert torch.equal(fresh.state_dict()[key], model.state_dict()[key])
    assert main(["info", str(run)]) == 0 and f"{run / 'best.pth'}: ours checkpoint" in capsys.readouterr().out
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "model.safetensors").write_bytes(b"")
    assert checkpoint_file(hf) == hf / "model.safetensors"
    assert main(["info", str(tmp_path)]) == 1 and "a folder without best.pth" in capsys.readouterr().err
