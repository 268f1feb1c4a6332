"""Loading official-layout and our own checkpoints; clear errors for bad files."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch

from rtdetr.convert import CheckpointError, infer_model_config, load_model, load_state_dict_into, save_model
from rtdetr.models import create_model, list_models


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in sa.items() if not k.endswith(("anchors", "valid_mask")))


def test_official_release_layout_loads_and_config_is_inferred(tmp_path: Path) -> None:
    src = create_model("rtdetrv2_r18vd", num_classes=7)
    path = tmp_path / "rtdetrv2_r18vd_120e_coco.pth"
    # official release files: {'ema': {'module': sd, 'updates': n}} plus training state and plain metadata
    torch.save(
        {
            "date": "2024-07-01",
            "last_epoch": 119,
            "ema": {"module": src.state_dict(), "updates": 10},
            "model": {k: v * 0 for k, v in src.state_dict().items()},
        },
        path,
    )
    model = load_model(path)
    assert model.config.name == "rtdetrv2_r18vd" and model.config.num_classes == 7
    assert _same_weights(model, src)  # ema.module preferred over model


@pytest.mark.parametrize("name", [n for n in list_models() if not n.endswith("_dsp")])
def test_infer_config_recovers_every_variant(name: str) -> None:
    sd = create_model(name, num_classes=11).state_dict()
    cfg = infer_model_config(sd)
    assert cfg.name == name and cfg.num_classes == 11


def test_v1_and_v2_spellings_load_into_each_other() -> None:
    v1, v2 = create_model("rtdetr_r18vd"), create_model("rtdetrv2_r18vd")
    assert "encoder.input_proj.0.0.weight" in v1.state_dict() and "decoder.enc_output.0.weight" in v1.state_dict()
    assert "encoder.input_proj.0.conv.weight" in v2.state_dict() and "decoder.anchors" in v2.state_dict()
    assert load_state_dict_into(v2, v1.state_dict()).ok
    back = create_model("rtdetr_r18vd")
    assert load_state_dict_into(back, v2.state_dict()).ok
    assert _same_weights(back, v1)


def test_regenerable_buffers_of_another_size_are_replaced() -> None:
    small = create_model("rtdetrv2_r18vd", eval_spatial_size=[320, 320])
    big = create_model("rtdetrv2_r18vd")
    assert load_state_dict_into(big, small.state_dict()).ok
    assert big.decoder.anchors.shape == (1, 8400, 4)


def test_frozen_bn_and_plain_bn_checkpoints_are_interchangeable() -> None:
    frozen = create_model("rtdetr_r18vd", backbone={"freeze_norm": True})
    plain = create_model("rtdetr_r18vd")
    assert load_state_dict_into(plain, frozen.state_dict()).ok  # no num_batches_tracked in FrozenBN
    assert load_state_dict_into(frozen, plain.state_dict()).ok


def test_mismatch_lists_every_problem() -> None:
    sd = create_model("rtdetr_r18vd", num_classes=3).state_dict()
    sd["decoder.extra.weight"] = torch.zeros(1)
    del sd["decoder.query_pos_head.layers.0.bias"]
    with pytest.raises(CheckpointError) as err:
        load_state_dict_into(create_model("rtdetr_r18vd"), sd, origin="x.pth")
    msg = str(err.value)
    assert "x.pth" in msg and "decoder.extra.weight" in msg and "decoder.query_pos_head.layers.0.bias" in msg
    assert "decoder.dec_score_head.0.weight" in msg and "(3, 256)" in msg and "(80, 256)" in msg


def test_non_strict_load_keeps_heads_random_for_new_classes(tmp_path: Path) -> None:
    src = create_model("rtdetr_r18vd")
    path = save_model(src, tmp_path / "coco.pth")
    tuned = load_model(path, num_classes=3, strict=False)
    assert tuned.config.num_classes == 3
    assert torch.equal(tuned.backbone.conv1.conv1_1.conv.weight, src.backbone.conv1.conv1_1.conv.weight)


def test_weights_holding_nan_or_inf_are_refused_by_name(tmp_path: Path) -> None:
    model = create_model("rtdetrv2_r18vd", num_classes=3)
    state = model.state_dict()
    state["decoder.dec_bbox_head.2.layers.2.bias"][1] = float("nan")  # a diverged run's box head
    state["backbone.conv1.conv1_1.norm.running_var"][0] = float("inf")
    path = tmp_path / "diverged.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"diverged.pth: 2 weight tensor\(s\) hold NaN or infinite values \("):
        load_model(path)
    with pytest.raises(CheckpointError, match="decoder.dec_bbox_head.2.layers.2.bias"):
        load_state_dict_into(create_model("rtdetrv2_r18vd", num_classes=5), state, strict=False)  # fine-tune start too
    state["decoder.dec_bbox_head.2.layers.2.bias"][1] = 0.0
    state["backbone.conv1.conv1_1.norm.running_var"][0] = 1.0
    state["decoder.anchors"][0, 0] = float("inf")  # the official buffer marks invalid anchors so: not a weight
    load_state_dict_into(create_model("rtdetrv2_r18vd", num_classes=3), state)  # finite weights again: loads


def test_save_load_round_trip_restores_config(tmp_path: Path) -> None:
    src = create_model("rtdetrv2_r50vd_m", num_classes=4, decoder={"num_points": [2, 3, 4]})
    path = save_model(src, tmp_path / "sub" / "ckpt.pth", extra={"epoch": 3})
    model = load_model(path)
    assert model.config == src.config and _same_weights(model, src)
    assert model.decoder_depth == 3  # r50vd_m evaluates at layer 3
    assert not list(tmp_path.joinpath("sub").glob(".*tmp"))


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_model(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk.pth: not a readable PyTorch checkpoint"):
        load_model(junk)
    good = save_model(create_model("rtdetr_r18vd"), tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        load_model(truncated)
    other = tmp_path / "other.pth"
    torch.save({"optimizer": {"lr": 0.1}}, other)
    with pytest.raises(CheckpointError, match="no state dict found"):
        load_model(other)


class _Payload:
    def __reduce__(self):  # noqa: ANN204
        return (print, ("arbitrary code ran",))


def test_tampered_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": create_model("rtdetr_r18vd").state_dict(), "x": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"evil.pth: refused to unpickle"):
        load_model(path)
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_ddp_prefix_and_plain_state_dict(tmp_path: Path) -> None:
    src = create_model("rtdetr_r34vd", num_classes=2)
    path = tmp_path / "ddp.pth"
    torch.save(collections.OrderedDict((f"module.{k}", v) for k, v in src.state_dict().items()), path)
    assert _same_weights(load_model(path), src)


@pytest.mark.parametrize("content", [b"just some text\n", bytes(range(256)) * 40, b"\x80\x02}q\x00X\x01"])
def test_corrupt_files_are_one_line_errors_everywhere(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Text, random bytes and a truncated pickle: a CheckpointError naming the file from the API, exit 1 with one
    line from every command that opens a model."""
    from rtdetr import RTDETR
    from rtdetr.cli import main

    bad = tmp_path / "model.pth"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="model.pth: not a readable PyTorch checkpoint"):
        RTDETR(bad)
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    for cmd in (
        ["predict", str(bad), str(image), "--no-save"],
        ["val", str(bad), "--data", str(tmp_path / "x.json")],
        ["export", str(bad)],
        ["convert", str(bad), str(tmp_path / "o.pth")],
        ["serve", str(bad)],
    ):
        assert main(cmd) == 1, cmd
        err = capsys.readouterr().err
        assert "model.pth: not a readable PyTorch checkpoint" in err and err.count("\n") == 1, (cmd, err)
