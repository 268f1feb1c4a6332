import json
from pathlib import Path

import pytest
import torch

from rtdetr.cli import main
from rtdetr.convert import load_model
from rtdetr.models import create_model


def test_info_lists_variants(capsys: pytest.CaptureFixture) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "rtdetr_r18vd" in out and "rtdetrv2_r101vd" in out and "20.00" in out  # published 20M
    assert "Training recipes shipped (rtdetr train -c NAME): fast_small, finetune_custom," in out
    assert main(["info", "rtdetr_r18*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["rtdetr_r18vd"]


def test_info_measures_at_a_wide_size(capsys: pytest.CaptureFixture) -> None:
    """``--size`` takes WIDTHxHEIGHT here as everywhere; the FLOPs follow the pixel count but for the decoder's."""
    gflops = {}
    for size in ("320", "320x192"):
        assert main(["info", "rtdetr_r18vd", "--measure", "--size", size, "--json"]) == 0
        gflops[size] = json.loads(capsys.readouterr().out)[0]["gflops"]
    assert 0.6 < gflops["320x192"] / gflops["320"] < 0.7  # 0.6 of the pixels; the decoder's share does not shrink
    assert main(["info", "rtdetr_r18vd", "--measure", "--size", "320x192"]) == 0
    assert "GFLOPs counted at 320x192" in capsys.readouterr().out


def test_info_unknown_pattern_fails(capsys: pytest.CaptureFixture) -> None:
    assert main(["info", "yolo*"]) == 1
    assert "no variant matches 'yolo*'" in capsys.readouterr().err


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["convert", "only-one-arg"])
    assert e.value.code == 2


def test_convert_official_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = create_model("rtdetr_r18vd", num_classes=5)
    official = tmp_path / "rtdetr_r18vd_dec3_6x_coco_from_paddle.pth"
    torch.save({"ema": {"module": src.state_dict()}}, official)
    out = tmp_path / "ours.pth"
    assert main(["convert", str(official), str(out)]) == 0
    assert "rtdetr_r18vd, 5 classes" in capsys.readouterr().out
    model = load_model(out)
    assert torch.equal(model.decoder.dec_score_head[0].weight, src.decoder.dec_score_head[0].weight)
    assert main(["convert", str(official), str(tmp_path / "three.pth"), "--num-classes", "3"]) == 0
    assert load_model(tmp_path / "three.pth").config.num_classes == 3


def test_convert_bad_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_text("garbage")
    assert main(["convert", str(bad), str(tmp_path / "o.pth")]) == 1
    err = capsys.readouterr().err
    assert "bad.pth" in err and "not a readable PyTorch checkpoint" in err
    # another model's weights (a classifier, a .safetensors of another architecture): said so with its keys; the
    # message used to send the user to rtdetr.convert.hf, which the CLI already runs for HF files
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}, tmp_path / "resnet.pth")
    assert main(["convert", str(tmp_path / "resnet.pth"), str(tmp_path / "o.pth")]) == 1
    err = capsys.readouterr().err
    assert "not an RT-DETR checkpoint" in err and "(first of 2 keys: conv1.weight, fc.weight)" in err
    assert "convert.hf" not in err
    # an exported graph (it read 'not a readable PyTorch checkpoint (corrupt or another format)')
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    assert main(["convert", str(tmp_path / "m.onnx"), str(tmp_path / "o.pth")]) == 1
    assert "m.onnx: an exported ONNX graph, not a checkpoint; predict, val" in capsys.readouterr().err


def test_version_and_load_model_export(capsys: pytest.CaptureFixture) -> None:
    import rtdetr

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"rtdetr {rtdetr.__version__}"
    assert rtdetr.load_model is load_model  # the README's `from rtdetr import load_model`


def test_convert_variant_must_match_the_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = create_model("rtdetrv2_r18vd", num_classes=5)
    official = tmp_path / "official.pth"
    torch.save({"ema": {"module": src.state_dict()}}, official)
    assert main(["convert", str(official), str(tmp_path / "x.pth"), "--variant", "rtdetrv2_r50vd"]) == 1
    assert "holds a rtdetrv2_r18vd model; the variant 'rtdetrv2_r50vd' given does not match" in capsys.readouterr().err
    assert main(["convert", str(official), str(tmp_path / "dsp.pth"), "--variant", "rtdetrv2_r18vd_dsp"]) == 0
    dsp = load_model(tmp_path / "dsp.pth")
    assert dsp.config.name == "rtdetrv2_r18vd_dsp" and dsp.config.decoder.cross_attn_method == "discrete"
    ours = tmp_path / "ours.pth"  # our own checkpoint (config embedded) is checked the same way
    assert main(["convert", str(official), str(ours)]) == 0
    assert main(["convert", str(ours), str(tmp_path / "y.pth"), "--variant", "rtdetr_r34vd"]) == 1
    assert "does not match" in capsys.readouterr().err
    assert main(["convert", str(ours), str(tmp_path / "z.pth"), "--variant", "rtdetrv2_r18vd_dsp"]) == 0
    assert load_model(tmp_path / "z.pth").config.decoder.cross_attn_method == "discrete"


def test_train_minutes_sets_the_time_budget(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    seen = {}

    class FakeTrainer:
        main = True  # process 0

        def __init__(self, cfg) -> None:  # noqa: ANN001
            seen["cfg"] = cfg

        def fit(self) -> dict:
            return {"best_ap": -1.0, "best_epoch": -1, "epochs_run": 2, "last_eval": None, "output_dir": "x"}

    monkeypatch.setattr("rtdetr.engine.trainer.Trainer", FakeTrainer)
    assert main(["train", "--data", "d.json", "--minutes", "1.5"]) == 0
    assert seen["cfg"].train.time_budget_s == 90.0
    assert main(["train", "--data", "d.json", "--size", "320x192"]) == 0  # WIDTHxHEIGHT as predict/val/export take
    assert seen["cfg"].data.image_size == (192, 320) and seen["cfg"].model.eval_spatial_size == (192, 320)
    assert main(["train", "--data", "d.json", "--size", "320"]) == 0
    assert seen["cfg"].data.image_size == (320, 320)
    # no validation set: said so, instead of "best AP -1.0000 at epoch -1"
    assert "no validation set, so no AP: best.pth holds the last epoch (2)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "d.json", "--minutes", "soon"])
    assert e.value.code == 2
    assert main(["train", "--data", "d.json", "train.time_budget_s=0"]) == 1  # --minutes 0: a usage error
    assert "time_budget_s must be > 0 seconds, got 0.0" in capsys.readouterr().err


def test_train_summary_line() -> None:
    from rtdetr.engine.rundir import train_summary as _train_summary

    run = {"best_ap": 0.4321, "best_epoch": 3, "epochs_run": 5, "last_eval": {"stats": {}}, "output_dir": "r"}
    assert _train_summary(run) == "best AP 0.4321 at epoch 3; outputs in r"
    assert _train_summary({**run, "best_ap": -1.0, "best_epoch": -1, "last_eval": None}).startswith(
        "no validation set, so no AP: best.pth holds the last epoch (5); evaluate it with 'rtdetr val r/best.pth"
    )


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["val", "m.pth", "--data", "d", "--batch", "0"], "--batch: 0 is too small; it must be >= 1"),
        (["val", "m.pth", "--data", "d", "--conf", "2"], "--conf: 2.0 is out of range; it must be within 0..1"),
        (["val", "m.pth", "--data", "d", "--size", "7"], "--size: 7 is too small; it must be >= 32"),
        (["predict", "m.pth", "x.jpg", "--size", "0"], "--size: 0 is too small; it must be >= 32 on each side"),
        (["export", "m.pth", "--size", "640x20"], "--size: 640x20 is too small; it must be >= 32 on each side"),
        (["val", "m.pth", "--data", "d", "--size", "640,384"], "--size: '640,384' is not a side (640) or WIDTHxHEIGHT"),
        (["predict", "m.pth", "x.jpg", "--threads", "-1"], "--threads: -1 is too small; it must be >= 1"),
        (["predict", "m.pth", "x.jpg", "--decoder-depth", "0"], "--decoder-depth: 0 is too small"),
        (["predict", "m.pth", "x.jpg", "--video-stride", "two"], "--video-stride: 'two' is not a whole number"),
        (["export", "m.pth", "--max-det", "0"], "--max-det: 0 is too small; it must be >= 1"),
        (["benchmark", "m.pth", "--batch", "1", "0"], "--batch: 0 is too small"),
        (["benchmark", "m.pth", "--warmup", "-1"], "--warmup: -1 is too small; it must be >= 0"),
        (["benchmark", "m.pth", "--yolo-conf", "5"], "--yolo-conf: 5.0 is out of range"),
        (["info", "--measure", "--size", "0"], "--size: 0 is too small; it must be >= 32"),
        (["convert", "a.pth", "b.pth", "--num-classes", "0"], "--num-classes: 0 is too small"),
        (["train", "--data", "d", "--batch", "0"], "--batch: 0 is too small; it must be >= 1"),
        (["train", "--data", "d", "--threads", "0"], "--threads: 0 is too small"),
        (["train", "--data", "d", "--minutes", "0"], "--minutes: 0.0 is too small; it must be >= 0.01"),
        (["train", "--data", "d", "--minutes", "nan"], "--minutes: 'nan' is not a finite number"),
        (["val", "m.pth", "--data", "d", "--conf", "nan"], "--conf: 'nan' is not a finite number"),
    ],
)
def test_bad_numbers_are_usage_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    """Each used to get past the parser: a traceback (--threads -1), a library's words (--batch 0: 'batch_size
    should be a positive integer value'; --size 0: a convolution's kernel size), or a run on a meaningless value
    (--conf 2, --size 7, --max-det 0, --warmup -1)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_json_output_is_strict() -> None:
    """`rtdetr val --json` printed NaN for a class without objects (its AP, P, R, F1): not JSON for jq or a browser."""
    from rtdetr.cli_args import dumps

    def refuse(token: str) -> None:
        raise ValueError(token)

    text = dumps({"per_class": {"toaster": {"AP": float("nan"), "f1": float("inf")}}, "rows": [1.5, (float("nan"),)]})
    assert json.loads(text, parse_constant=refuse) == {"per_class": {"toaster": {"AP": None, "f1": None}},
                                                       "rows": [1.5, [None]]}  # fmt: skip


def test_os_errors_lead_with_the_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """-o naming a file printed '[Errno 17] File exists: 'x''; the path now comes first, with what is wrong."""
    (tmp_path / "afile").write_text("x")
    img = tmp_path / "i.png"
    from PIL import Image

    Image.new("RGB", (40, 30)).save(img)
    assert main(["predict", "rtdetr_r18vd", str(img), "-o", str(tmp_path / "afile")]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'afile'}: file exists; an output folder is needed there" in err and "Errno" not in err


def test_predict_takes_several_sources_and_writes_yolo_labels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`rtdetr predict m.pth imgs/*.jpg` hands the shell's expansion over as several arguments: that was
    'unrecognized arguments'. --save-txt/--save-conf write YOLO labels, --save-crop the detections' crops; with
    --no-save they are refused."""
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / name)
    out = tmp_path / "out"
    argv = ["predict", "rtdetr_r18vd", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--size", "64"]
    assert main([*argv, "-o", str(out), "--save-conf", "--conf", "0", "--max-det", "3"]) == 0
    said = capsys.readouterr().out
    assert f"2 images, 6 detections; drawn images and videos with their JSON in {out}, YOLO labels in {out}/lab" in said
    assert sorted(f.name for f in (out / "labels").iterdir()) == ["a.txt", "b.txt", "classes.txt"]
    assert all(len(line.split()) == 6 for line in (out / "labels" / "a.txt").read_text().splitlines())
    with pytest.raises(SystemExit):
        main([*argv, "--no-save", "--save-txt"])
    assert "argument --save-txt: not allowed with argument --no-save" in capsys.readouterr().err
    assert main([*argv, "--no-save", "--save-conf"]) == 1
    assert "--save-conf writes files: it cannot go with --no-save" in capsys.readouterr().err
    assert main([*argv, "--no-save", "--save-crop"]) == 1
    assert "--save-crop writes files: it cannot go with --no-save" in capsys.readouterr().err
    crops = tmp_path / "crops"  # each detection's pixels by class: a.png's 3 and b.png's 3
    assert main([*argv, "-o", str(crops), "--save-crop", "--conf", "0", "--max-det", "3"]) == 0
    assert f"crops in {crops}/crops" in capsys.readouterr().out
    assert sorted(p.stem for p in (crops / "crops").rglob("*.jpg")) == ["a_1", "a_2", "a_3", "b_1", "b_2", "b_3"]


def test_ctrl_c_in_training_says_what_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Ctrl-C printed only 'interrupted': now where the last finished epoch is and how to go on from it."""
    import torch

    class Interrupted:
        def __init__(self, cfg) -> None:  # noqa: ANN001
            self.out_dir = tmp_path / "run"

        def fit(self) -> dict:
            raise KeyboardInterrupt

    monkeypatch.setattr("rtdetr.engine.trainer.Trainer", Interrupted)
    assert main(["train", "--data", "d.json"]) == 130
    assert f"interrupted; {tmp_path / 'run'}: nothing was saved to resume from" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    torch.save({"epoch": 4, "model": {}}, tmp_path / "run" / "last.pth")
    assert main(["train", "--data", "d.json"]) == 130
    err = capsys.readouterr().err
    assert f"last.pth holds epoch 4; continue from there with: rtdetr train --resume {tmp_path / 'run'}" in err


def test_sigterm_in_training_stops_like_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """SIGTERM (preemption, ``docker stop``, ``kill``) killed a training run without a word: now it stops as Ctrl-C
    does, says what ``last.pth`` holds and exits 143; the handler is the caller's again afterwards."""
    import os
    import signal
    import time

    import torch

    class Killed:
        def __init__(self, cfg) -> None:  # noqa: ANN001
            self.out_dir = tmp_path / "run"

        def fit(self) -> dict:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal lands here
            return {}

    (tmp_path / "run").mkdir()
    torch.save({"epoch": 3, "model": {}}, tmp_path / "run" / "last.pth")
    monkeypatch.setattr("rtdetr.engine.trainer.Trainer", Killed)
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    assert main(["train", "--data", "d.json"]) == 143
    assert time.monotonic() - started < 4
    err = capsys.readouterr().err
    assert f"terminated (SIGTERM); {tmp_path / 'run' / 'last.pth'} holds epoch 3; continue from there with" in err
    assert signal.getsignal(signal.SIGTERM) == before


def test_demo_command_hands_its_options_to_the_demo(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``rtdetr demo`` is ``python -m rtdetr.demo`` (options, overrides, errors under its own name), and every other
    command still refuses options it does not know."""
    with pytest.raises(SystemExit) as e:
        main(["demo", "--threads", "0"])
    assert e.value.code == 2 and "rtdetr demo: error: argument --threads: 0 is too small" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["info", "--bogus"])
    assert e.value.code == 2 and "rtdetr: error: unrecognized arguments: --bogus" in capsys.readouterr().err
    tiny = ["-o", str(tmp_path), "--epochs", "1", "--size", "64", "--train-images", "2", "--val-images", "1"]
    assert main(["demo", *tiny, "train.batch_size=2", "train.progress=false"]) == 1  # 1 epoch: below the AP bar
    assert json.loads((tmp_path / "summary.json").read_text())["epochs"] == 1
    assert "[3/3] best COCO AP" in capsys.readouterr().out


def test_every_option_of_every_command_says_what_it_does() -> None:
    """``--help`` listed ``--split``, ``--format``, ``--opset``, ``--runs``... with no word on them."""
    import argparse

    from rtdetr.cli import _HANDLERS
    from rtdetr.cli_parser import build_parser

    commands = next(a for a in build_parser(_HANDLERS)._actions if isinstance(a, argparse._SubParsersAction))
    bare = [f"{name} {'/'.join(a.option_strings)}" for name, sub in commands.choices.items() for a in sub._actions
            if a.option_strings and not a.help]  # fmt: skip
    assert not bare, f"options without help: {bare}"
    assert len(commands.choices) >= 10


def test_predict_line_lists_few_detections_and_counts_many() -> None:
    from rtdetr.cli import found_text

    assert found_text([], []) == "nothing"
    assert found_text(["car", "person"], [0.914, 0.5]) == "car 0.91, person 0.50"
    names = ["Platelets"] + ["WBC"] * 2 + ["RBC"] * 9  # 12: a line of 12 scores said less than this
    scores = [0.41, 0.88, 0.35] + [0.39] * 9
    assert found_text(names, scores) == "9 RBC, 2 WBC, 1 Platelets (scores 0.35-0.88)"
    assert found_text(names[:8], scores[:8]).split(", ") == [
        "Platelets 0.41",
        "WBC 0.88",
        "WBC 0.35",
        *["RBC 0.39"] * 5,
    ]


def test_every_command_that_writes_takes_dash_o() -> None:
    """One vocabulary: where results go is ``-o``/``--output`` everywhere (``rtdetr demo -o`` was refused)."""
    import argparse

    from rtdetr.cli import _HANDLERS
    from rtdetr.cli_parser import build_parser
    from rtdetr.demo import build_parser as demo_parser

    commands = next(a for a in build_parser(_HANDLERS)._actions if isinstance(a, argparse._SubParsersAction))
    parsers = {name: commands.choices[name] for name in ("train", "val", "predict", "export", "benchmark")}
    parsers["demo"] = demo_parser()
    for name, p in parsers.items():
        out = [a for a in p._actions if "-o" in a.option_strings]
        assert out and "--output" in out[0].option_strings, name
