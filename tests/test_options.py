"""One table of options: the CLI's flags and the API's defaults come from it, and out-of-range values are
refused with one line naming the option and its range, through both entry points."""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import numpy as np
import pytest

from rtdetr import RTDETR
from rtdetr.cli import _HANDLERS, main
from rtdetr.cli_parser import build_parser
from rtdetr.options import (
    InferenceOptions,
    ServeConfig,
    add_arguments,
    as_size,
    from_args,
    parse_size,
    resolve_classes,
    size_text,
)
from tests.conftest import RunCaptured
from tests.engine.conftest import TINY_MODEL


def test_cli_and_api_share_the_defaults() -> None:
    args = build_parser(_HANDLERS).parse_args(["predict", "m.pth", "img.jpg"])
    opts = from_args(args, InferenceOptions)
    assert opts == InferenceOptions()
    api = inspect.signature(RTDETR.predict).parameters
    for f in dataclasses.fields(InferenceOptions):
        assert api[f.name].default == f.default, f.name
    serve = build_parser(_HANDLERS).parse_args(["serve", "m.pth"])
    assert from_args(serve, ServeConfig) == ServeConfig()
    assert ServeConfig().max_det == InferenceOptions().max_det


def test_flags_are_typed_and_named_from_the_table() -> None:
    p = argparse.ArgumentParser()
    add_arguments(p, InferenceOptions)
    opts = from_args(
        p.parse_args(["--conf", "0.4", "--classes", "0", "2", "--size", "320", "--batch", "4"]), InferenceOptions
    )
    assert opts.conf == 0.4 and opts.classes == (0, 2) and opts.image_size == (320, 320) and opts.batch == 4
    # WIDTHxHEIGHT, as resolutions are written, becomes (height, width), the models' order
    assert from_args(p.parse_args(["--size", "640x384"]), InferenceOptions).image_size == (384, 640)
    assert from_args(p.parse_args(["--size", "640X384"]), InferenceOptions).image_size == (384, 640)
    assert size_text((384, 640)) == "640x384" and parse_size(size_text((96, 128))) == (96, 128)
    for bad in ("0", "640x16", "640x", "x", "640x384x3", "wide"):
        with pytest.raises(argparse.ArgumentTypeError, match=r">= 32 on each side|is not a side \(640\) or WIDTHxH"):
            parse_size(bad)
    with pytest.raises(ValueError, match=r"^image_size must be >= 32"):  # the API's check, below the parser's
        InferenceOptions(image_size=(16, 640))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--conf", "2.0"], "--conf must be within 0..1, got 2.0"),
        (["--conf", "-1"], "--conf must be within 0..1"),
        (["--max-det", "0"], "--max-det must be >= 1"),
        (["--batch", "0"], "--batch must be >= 1"),
        (["--classes", "5"], "classes must be within 0..2 for this 3-class model"),
        (["--decoder-depth", "7"], "decoder_depth must be within 1..2"),
    ],
)
def test_out_of_range_predict_options_are_refused(
    flags: list[str],
    message: str,
    tmp_path,
    capsys: pytest.CaptureFixture,  # noqa: ANN001
) -> None:
    from rtdetr.convert import save_model
    from rtdetr.models import create_model

    ckpt = save_model(create_model("rtdetr_r18vd", num_classes=3, **TINY_MODEL), tmp_path / "m.pth")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (40, 30)).save(image)
    assert main(["predict", str(ckpt), str(image), "--no-save", *flags]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1  # one line, no traceback


def test_out_of_range_api_options_are_refused() -> None:
    det = RTDETR("rtdetr_r18vd", num_classes=3, **TINY_MODEL)
    img = np.zeros((30, 40, 3), np.uint8)
    for kwargs, message in [
        ({"conf": 2.0}, "conf must be within 0..1"),
        ({"max_det": 0}, "max_det must be >= 1"),
        ({"batch": 0}, "batch must be >= 1"),
        ({"classes": [3]}, "classes must be within 0..2"),
        ({"image_size": (0, 0)}, "image_size must be >= 32"),
    ]:
        with pytest.raises(ValueError, match=message):
            det.predict(img, **kwargs)
    assert len(det.predict(img, conf=0.0, max_det=2)[0]) == 2


def test_every_api_method_takes_a_size_as_the_cli_does(tmp_path, captured_run: dict) -> None:  # noqa: ANN001
    """``image_size=`` is a side, ``(height, width)`` or the CLI's ``WIDTHxHEIGHT`` text in every method (a side
    failed with "'int' object is not iterable" in predict/val/export while train() took it)."""
    assert [as_size(v) for v in (None, 96, np.int64(96), (64, 96), [64, 96], "96x64", "96")] == [
        None, (96, 96), (96, 96), (64, 96), (64, 96), (64, 96), (96, 96)]  # fmt: skip
    for bad, says in [((96,), "a side"), (True, "a side"), (96.0, "a side"), ("9x", "is not a side"), (16, ">= 32")]:
        with pytest.raises(ValueError, match=says):
            as_size(bad)
    det = RTDETR("rtdetr_r18vd", num_classes=3, **TINY_MODEL)
    assert det.predictor(image_size=96).image_size == (96, 96)
    assert det.predictor(image_size="96x64").image_size == (64, 96)  # width first, as typed on the CLI
    assert len(det.predict(np.zeros((30, 40, 3), np.uint8), image_size=96, conf=0.0, max_det=2)[0]) == 2
    report = det.export(output=tmp_path / "m.onnx", image_size="96x64", check=False)
    assert tuple(report["image_size"]) == (64, 96)
    with pytest.raises(RunCaptured):
        det.train("d.json", image_size="96x64")
    assert captured_run["cfg"].data.image_size == (64, 96)


def test_serve_port_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["serve", "rtdetr_r18vd", "--port", "99999"])
    assert e.value.code == 2 and "--port: 99999 is out of range; it must be within 1..65535" in capsys.readouterr().err


def test_train_takes_the_shared_vocabulary(tmp_path, captured_run: dict) -> None:  # noqa: ANN001
    """-o, --size, --threads and --device mean on train what they mean everywhere."""
    import torch

    threads = torch.get_num_threads()
    try:
        with pytest.raises(RunCaptured):
            main(["train", "--data", "d.json", "-o", str(tmp_path / "r"), "--size", "96", "--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    cfg = captured_run["cfg"]
    assert cfg.train.output_dir == str(tmp_path / "r") and cfg.data.image_size == (96, 96)
    assert cfg.model.eval_spatial_size == (96, 96)


def test_classes_by_id_or_name() -> None:
    """`classes` takes names as well as ids (API, --classes, the service's ?classes=): a name used to be a TypeError
    ("'<' not supported between instances of 'str' and 'int'") in Python and a usage error on the command line."""
    names = ["person", "traffic light", "car"]
    assert resolve_classes(None, names) is None
    assert resolve_classes([2, "Person", "traffic_light", "1"], names) == (2, 0, 1, 1)
    assert resolve_classes("car, person", names) == (2, 0)
    assert resolve_classes(["TRAFFIC  light"], names) == (1,)
    with pytest.raises(ValueError, match=r"no class named 'persn'; did you mean 'person'\? \(its classes: person, "):
        resolve_classes(["persn"], names)
    with pytest.raises(ValueError, match="class ids or names, got True"):
        resolve_classes([True], names)
    det = RTDETR("rtdetr_r18vd")  # COCO names
    img = np.zeros((40, 40, 3), np.uint8)
    by_id = det.predict(img, conf=0.0, classes=[0, 2])[0]
    by_name = det.predict(img, conf=0.0, classes=["person", "car"])[0]
    assert set(by_name.labels.tolist()) <= {0, 2} and by_name.labels.tolist() == by_id.labels.tolist()
    with pytest.raises(ValueError, match="did you mean 'cat'"):
        det.predict(img, classes=["cta"])


def test_cli_classes_by_name(capsys: pytest.CaptureFixture, tmp_path) -> None:  # noqa: ANN001
    import json

    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("RGB", (40, 30)).save(img)
    argv = ["predict", "rtdetr_r18vd", str(img), "--no-save", "--json", "--conf", "0", "--classes", "person", "2"]
    assert main(argv) == 0
    assert {d["label"] for d in json.loads(capsys.readouterr().out)["detections"]} <= {0, 2}
    assert main(["predict", "rtdetr_r18vd", str(img), "--no-save", "--classes", "persn"]) == 1
    assert "did you mean 'person'" in capsys.readouterr().err
