"""The Python facade and the val/predict CLI on a checkpoint trained for one epoch on generated data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from rtdetr import RTDETR
from rtdetr.cli import main
from tests.engine.conftest import TINY, TINY_MODEL


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from rtdetr.data.synthetic import make_synthetic_coco

    root = tmp_path_factory.mktemp("api")
    data = make_synthetic_coco(root / "data", num_train=8, num_val=4, size=64, seed=2)
    det = RTDETR("rtdetr_r18vd", num_classes=4, **TINY_MODEL)
    extra = {k.split("=")[0].split(".", 1)[1]: yaml.safe_load(k.split("=")[1]) for k in TINY if k.startswith("train.")}
    det.train(
        data["train"],
        val=data["val"],
        epochs=1,
        output=root / "run",
        image_size=64,
        progress=False,
        **{k: v for k, v in extra.items() if k != "batch_size"},
        batch_size=2,
    )
    return root / "run" / "best.pth", data


def test_facade_after_training(trained: tuple[Path, dict]) -> None:
    ckpt, data = trained
    det = RTDETR(ckpt)
    assert det.class_names == ["circle", "square", "triangle", "cross"] and det.image_size == (64, 64)
    res = det.predict(np.zeros((50, 70, 3), np.uint8), conf=0.0, max_det=3)
    assert len(res) == 1 and len(res[0]) == 3 and res[0].orig_size == (70, 50)
    metrics = det.val(data["val"], split="val", batch=2)
    assert set(metrics["stats"]) >= {"AP", "AP50"} and set(metrics["per_class"]) == set(det.class_names)
    assert det.info()["num_classes"] == 4


def test_cli_val_writes_report(trained: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt, data = trained
    assert main(["val", str(ckpt), "--data", str(data["val"]), "--save-dir", str(tmp_path), "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "AP50" in out and "circle" in out
    for name in ("metrics.json", "per_class.csv", "predictions.json", "confusion_matrix.png", "pr_curve.png"):
        assert (tmp_path / name).is_file(), name
    preds = json.loads((tmp_path / "predictions.json").read_text())
    assert preds and {"image_id", "category_id", "bbox", "score"} <= set(preds[0])
    import csv

    rows = list(csv.DictReader((tmp_path / "per_class.csv").open()))
    # both ids, named: predict's 0-based label and the dataset's category id (the generated COCO set starts at 1)
    assert [(r["label"], r["class"], r["category_id"]) for r in rows][:2] == [
        ("0", "circle", "1"),
        ("1", "square", "2"),
    ]


def test_val_without_data_uses_the_runs_val_set(
    trained: tuple[Path, dict],
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``rtdetr val best.pth`` alone evaluates on the set the run validated on (it required --data); a model with
    no run behind it says to give the data."""
    monkeypatch.chdir(tmp_path)  # val writes its report to ./runs/val
    ckpt, data = trained
    assert main(["val", str(ckpt), "--batch", "2", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert main(["val", str(ckpt), "--data", str(data["val"]), "--batch", "2", "--json"]) == 0
    assert alone["stats"] == json.loads(capsys.readouterr().out)["stats"]
    assert "evaluating on the run's validation set" in caplog.text and str(data["val"]) in caplog.text
    assert main(["val", "rtdetr_r18vd", "--size", "64"]) == 1
    assert "holds no training run's data settings: give the data to evaluate on (--data" in capsys.readouterr().err


def test_val_of_an_export_uses_the_runs_val_set(
    trained: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rtdetr val best.onnx`` (and the OpenVINO IR) alone evaluates on the run's validation set as ``best.pth``
    does: the export records the run's data settings (it said the graph held none); ``rtdetr info`` shows them."""
    pytest.importorskip("onnxruntime")
    from rtdetr.convert.summary import describe_export, format_summary

    monkeypatch.chdir(tmp_path)  # val writes its report to ./runs/val
    ckpt, data = trained
    assert main(["val", str(ckpt), "--data", str(data["val"]), "--batch", "2", "--json"]) == 0
    given = json.loads(capsys.readouterr().out)["stats"]
    RTDETR(ckpt).export(output=tmp_path / "m.onnx", check=False)
    assert main(["val", str(tmp_path / "m.onnx"), "--batch", "2", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)["stats"]
    assert alone == pytest.approx(given, abs=2e-3)  # ONNX Runtime against PyTorch fp32 on the same images
    assert f"  data.train            {data['train']}\n" in format_summary(describe_export(tmp_path / "m.onnx")) + "\n"
    RTDETR("rtdetr_r18vd", num_classes=4, **TINY_MODEL).export(output=tmp_path / "v.onnx", image_size=(64, 64),
                                                                 check=False)  # fmt: skip
    assert main(["val", str(tmp_path / "v.onnx")]) == 1  # a variant has no run: it says how to give data
    assert "holds no training run's data settings (an export records them" in capsys.readouterr().err
    if importlib.util.find_spec("openvino") is not None:
        RTDETR(ckpt).export("openvino", output=tmp_path / "ir" / "m.xml", check=False)
        assert main(["val", str(tmp_path / "ir" / "m.xml"), "--batch", "2", "--json", "--precision", "fp32"]) == 0
        assert json.loads(capsys.readouterr().out)["stats"] == pytest.approx(given, abs=2e-3)


def test_val_loads_images_as_the_run_did(
    trained: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run trained with ``data.shrink_above=0`` (full resolution) is validated at full resolution too (``val``
    used the default, shrinking anything above twice the input, whatever the run had set)."""
    import rtdetr.data
    from rtdetr.convert.checkpoint import read_checkpoint

    ckpt, data = trained
    raw = read_checkpoint(ckpt)
    raw["run_config"]["data"]["shrink_above"] = 0.0
    torch.save(raw, tmp_path / "full.pth")
    covers, real = [], rtdetr.data.DetectionDataset

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        covers.append(kwargs.get("load_cover"))
        return real(*args, **kwargs)

    monkeypatch.setattr(rtdetr.data, "DetectionDataset", spy)
    RTDETR(tmp_path / "full.pth").val(data["val"], batch=2)
    RTDETR(ckpt).val(data["val"], batch=2)
    RTDETR("rtdetr_r18vd", num_classes=4, **TINY_MODEL).val(data["val"], batch=2, image_size=(64, 64))  # no run
    assert covers == [None, (128, 128), (128, 128)]


def test_cli_predict(trained: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt, _ = trained
    img = tmp_path / "in" / "x.png"
    img.parent.mkdir()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(img)
    assert (
        main(
            [
                "predict",
                str(ckpt),
                str(img.parent),
                "--conf",
                "0",
                "--max-det",
                "2",
                "--save-dir",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert "1 image, 2 detections" in capsys.readouterr().out
    assert (tmp_path / "out" / "x.jpg").is_file() and (tmp_path / "out" / "x.json").is_file()
    assert main(["predict", str(ckpt), str(img), "--json", "--no-save", "--conf", "0", "--max-det", "1"]) == 0
    assert len(json.loads(capsys.readouterr().out)["detections"]) == 1


def test_cli_default_folders_keep_earlier_runs(
    trained: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Without -o a second predict (or val) writes to runs/predict2 (runs/val2): it used to overwrite the first."""
    ckpt, data = trained
    img = tmp_path / "x.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(img)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["predict", str(ckpt), str(img), "--conf", "0", "--max-det", "1"]) == 0
        assert main(["val", str(ckpt), "--data", str(data["val"]), "--batch", "2", "--json"]) == 0
    capsys.readouterr()
    assert (
        main(["val", str(ckpt), "--data", str(data["val"]), "--batch", "2", "--json", "-o", str(tmp_path / "vj")]) == 0
    )
    printed = capsys.readouterr().out
    assert "NaN" not in printed and json.loads(printed)["per_class"]  # strict JSON (a class without objects is null)
    for name in ("predict", "predict2"):
        assert sorted(f.name for f in (tmp_path / "runs" / name).iterdir()) == ["x.jpg", "x.json"]
    for name in ("val", "val2"):
        assert (tmp_path / "runs" / name / "metrics.json").is_file()


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", "rtdetr_r18vd", str(tmp_path / "missing.jpg"), "--no-save"]) == 1
    assert "missing.jpg: no such file" in capsys.readouterr().err
    assert main(["val", str(tmp_path / "nope.pth"), "--data", str(tmp_path)]) == 1
    assert "nope.pth: no such checkpoint file" in capsys.readouterr().err
    for cmd in ("train", "val", "predict", "info", "convert", "check-data"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        main(["predict", "m", "s", "--conf", "high"])
    assert e.value.code == 2


def test_predict_runs_a_fused_copy_kept_in_sync() -> None:
    import torch

    det = RTDETR("rtdetr_r18vd", num_classes=3, **TINY_MODEL)
    assert det.channels_last  # the CPU default
    fused = det.inference_model()
    assert fused.deployed and not det.model.deployed and det.inference_model() is fused
    img = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    a = det.predict(img, conf=0.0)[0]
    b = RTDETR("rtdetr_r18vd", num_classes=3, fuse=False, channels_last=False, **TINY_MODEL)
    b.model.load_state_dict(det.model.state_dict())
    ref = b.predict(img, conf=0.0)[0]
    torch.testing.assert_close(a.scores, ref.scores, atol=1e-4, rtol=0)
    det.model.set_decoder_depth(1)  # a new depth reaches the copy
    assert det.inference_model() is fused and fused.decoder_depth == 1
    with torch.no_grad():  # new weights rebuild it
        det.model.decoder.dec_score_head[0].bias.add_(1.0)
    assert det.inference_model() is not fused


def test_variant_name_warns_about_random_weights() -> None:
    import logging

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("rtdetr")
    logger.addHandler(handler)
    try:
        RTDETR("rtdetr_r18vd", num_classes=2, **TINY_MODEL)
    finally:
        logger.removeHandler(handler)
    assert any("RANDOM weights" in m for m in seen)


def test_val_labels_follow_the_model_class_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A VOC validation folder without one of the model's classes discovered its own, shorter list, so 'the model
    predicts 3 classes but ... has 2' (or, with a same-length list, labels shifted); the model's names now fix the
    labels. Same-length names that differ id by id are warned about."""
    from tests.data.conftest import write_image

    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    xml = ("<annotation><filename>{n}.jpg</filename><size><width>64</width><height>48</height></size><object>"
           "<name>{c}</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>"
           "</annotation>")  # fmt: skip
    for i, cls in enumerate(["ant", "cat", "cat"]):  # no 'bee'
        (root / "Annotations" / f"{i}.xml").write_text(xml.format(n=i, c=cls))
        write_image(root / "JPEGImages" / f"{i}.jpg")
    det = RTDETR("rtdetr_r18vd", class_names=["ant", "bee", "cat"], num_classes=3, **TINY_MODEL)
    res = det.val(root, split=None, batch=2)  # type: ignore[arg-type]
    assert list(res["per_class"]) == ["ant", "bee", "cat"]
    assert np.isnan(res["per_class"]["bee"]["AP"])  # no 'bee' objects: cat's objects are scored as class 2
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    write_image(yolo / "images" / "a.jpg")
    (yolo / "labels" / "a.txt").write_text("2 0.5 0.5 0.3 0.3\n")
    (yolo / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [ant, cat, bee]\n")
    with caplog.at_level("WARNING"):
        det.val(yolo / "data.yaml", batch=1)
    assert "1: 'cat' in the data, 'bee' in the model; 2: 'bee' in the data, 'cat' in the model" in caplog.text


def test_val_on_data_of_other_classes_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A VOC folder whose classes the model does not have (a COCO model on BCCD) dropped every object silently and
    printed AP -1 and rows of nan; now it is an error naming both class lists. Where some classes are the model's,
    the objects of the others are left out with a note that counts them by name, and the pr curve of a set with
    no scored class draws no empty legend (matplotlib warned)."""
    import warnings

    from tests.data.conftest import write_image

    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    obj = "<object><name>{}</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>"
    for i, classes in enumerate([["RBC", "WBC"], ["RBC"]]):
        body = "".join(obj.format(c) for c in classes)
        (root / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>64</width><height>48</height></size>{body}"
            "</annotation>"
        )
        write_image(root / "JPEGImages" / f"{i}.jpg")
    det = RTDETR("rtdetr_r18vd", class_names=["ant", "bee", "cat"], num_classes=3, **TINY_MODEL)
    with pytest.raises(ValueError, match=r"none of its objects is of a class this model detects: its classes are "
                       r"'RBC' \(2\), 'WBC' \(1\); the model's 3 are ant, bee, cat"):  # fmt: skip
        det.val(root, split=None, batch=2)  # type: ignore[arg-type]
    (root / "Annotations" / "1.xml").write_text((root / "Annotations" / "1.xml").read_text().replace("RBC", "cat"))
    with caplog.at_level("WARNING"):
        res = det.val(root, split=None, batch=2)  # type: ignore[arg-type]
    assert res["per_class"]["cat"]["AP"] >= 0 and np.isnan(res["per_class"]["ant"]["AP"])
    assert "2 objects of classes not in the class list (['ant', 'bee', 'cat']) were left out: 'RBC' (1), 'WBC' (1)" \
        in caplog.text  # fmt: skip
    for x in (root / "Annotations").glob("*.xml"):  # background images only: no class to draw a curve of
        x.write_text(x.read_text().split("<object>")[0] + "</annotation>")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels found to put in legend"
        res = det.val(root, split=None, batch=2, output=tmp_path / "report")  # type: ignore[arg-type]
    assert res["stats"]["AP"] == -1 and (tmp_path / "report" / "pr_curve.png").is_file()


def test_predict_label_files_and_crops_need_an_output_folder() -> None:
    det = RTDETR("rtdetr_r18vd", num_classes=2, **TINY_MODEL)
    for kwargs in ({"save_txt": True}, {"save_conf": True}, {"save_crop": True}):
        with pytest.raises(ValueError, match="save_txt, save_conf and save_crop write files: give output"):
            det.predict(np.zeros((20, 20, 3), np.uint8), **kwargs)


def test_saved_yolo_labels_evaluate_as_a_perfect_match(trained: tuple[Path, dict], tmp_path: Path) -> None:
    """End to end through independent code: predictions written by `--save-txt`, read back by the YOLO loader as
    ground truth and scored by the COCO evaluator against the same model's predictions give AP 1 (a box written
    in the wrong format, axis or scale scores near 0; class ids are checked one by one in test_saver, as a query's
    box also ranks under its other classes here)."""
    import shutil

    ckpt, data = trained
    images = tmp_path / "set" / "images"
    shutil.copytree(Path(data["val"]).parent.parent / "val", images)
    det = RTDETR(ckpt)
    det.predict(images, conf=0.0, max_det=10, output=tmp_path / "out", save_txt=True)
    (tmp_path / "out" / "labels").rename(tmp_path / "set" / "labels")
    metrics = det.val(images, output=tmp_path / "val")  # its top 10 are the labels; the rest rank below them
    assert "rebuilt from the yolo boxes" in metrics["ground_truth"]
    assert metrics["stats"]["AP"] > 0.99 and metrics["stats"]["AP50"] > 0.99
