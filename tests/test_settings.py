"""Settings travel as values, never as re-parsed YAML text, and every entry point resolves them alike
(issue: paths with ' #', digits-only folder names, one input size per run, a facade that keeps its state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtdetr import RTDETR
from rtdetr.cli import main
from rtdetr.config import ConfigError, DataConfig, RunConfig, apply_dotted_overrides
from rtdetr.convert import load_model
from rtdetr.recipe import load_recipe
from tests.conftest import RunCaptured
from tests.engine.conftest import TINY, TINY_MODEL

TRAIN_TAIL = [t for t in TINY if not t.startswith(("data.image_size", "model.eval_spatial_size"))]


@pytest.fixture(scope="module")
def awkward_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated set under a folder with a space and ' #' in its name, inside a digits-only folder."""
    from rtdetr.data.synthetic import make_synthetic_coco

    root = tmp_path_factory.mktemp("settings") / "my data #2" / "2024"
    return make_synthetic_coco(root, num_train=6, num_val=4, size=64, seed=3)


def test_dotted_values_are_typed_by_their_field() -> None:
    out = apply_dotted_overrides(
        {},
        [
            "data.train=my data #2/x.json",
            "data.val=2024",
            "train.output_dir=runs/run #1",
            "init_from=null",
            "model.name=rtdetr_r18vd",
            "train.epochs=3",
            "train.lr=2e-4",
            "train.amp=true",
            "data.image_size=[96,128]",
        ],
    )
    assert out["data"] == {"train": "my data #2/x.json", "val": "2024", "image_size": [96, 128]}
    assert out["train"] == {"output_dir": "runs/run #1", "epochs": 3, "lr": 2e-4, "amp": True}
    assert out["init_from"] == "null" and out["model"] == {"name": "rtdetr_r18vd"}
    cfg = load_recipe(None, ["data.train=2024", "train.output_dir=on"])
    assert cfg.data.train == "2024" and cfg.train.output_dir == "on"
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        load_recipe(None, ["train.epochs=three"])


def test_one_input_size_per_run() -> None:
    cfg = load_recipe(None, ["data.image_size=[160,160]"])
    assert cfg.model.eval_spatial_size == (160, 160)
    cfg = load_recipe(None, updates={"data": {"image_size": [96, 128]}, "model": {"eval_spatial_size": [640, 640]}})
    assert cfg.model.eval_spatial_size == (96, 128)
    assert RunConfig(data=DataConfig(image_size=(64, 64))).model.eval_spatial_size == (64, 64)


def test_cli_trains_validates_predicts_on_awkward_paths(
    awkward_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # val writes its report to ./runs/val
    out = tmp_path / "runs #1" / "2025"
    args = ["train", "--data", str(awkward_data["train"]), "--val", str(awkward_data["val"]), "--epochs", "1"]
    assert main([*args, "--output", str(out), *TRAIN_TAIL, "data.image_size=[64,64]", "train.progress=false"]) == 0
    best = out / "best.pth"
    assert best.is_file(), "the run must write exactly where --output says"
    assert load_model(best).config.eval_spatial_size == (64, 64)  # the training size, not 640
    capsys.readouterr()
    assert main(["val", str(best), "--data", str(awkward_data["val"]), "--batch", "2", "--json"]) == 0
    assert '"AP"' in capsys.readouterr().out
    images = awkward_data["val"].parent.parent / "val"
    assert main(["predict", str(best), str(images), "--save-dir", str(tmp_path / "pred #3"), "--conf", "0"]) == 0
    assert len(list((tmp_path / "pred #3").glob("*.json"))) == 4


def test_api_trains_on_awkward_paths_and_keeps_its_settings(awkward_data: dict[str, Path], tmp_path: Path) -> None:
    det = RTDETR("rtdetr_r18vd", num_classes=4, precision="bf16", fuse=False, channels_last=False, **TINY_MODEL)
    out = tmp_path / "2024"
    det.train(
        awkward_data["train"], val=awkward_data["val"], epochs=1, output=out, image_size=64, batch=2,
        progress=False, warmup_iters=2, ema_warmups=2, no_aug_epochs=0, lr=1e-3,
    )  # fmt: skip
    assert (out / "best.pth").is_file()
    assert det.precision == "bf16" and det.fuse is False and det.channels_last is False
    assert det.class_names == ["circle", "square", "triangle", "cross"]  # from the data, not "0".."3"
    assert det.checkpoint == out / "best.pth" and det.image_size == (64, 64)
    assert load_model(out / "best.pth").config.eval_spatial_size == (64, 64)
    metrics = det.val(awkward_data["val"], batch=2)
    assert "AP" in metrics["stats"]
    assert len(det.predict(np.zeros((40, 60, 3), np.uint8), conf=0.0, max_det=2)[0]) == 2


def test_api_recipe_starts_from_the_loaded_checkpoint(
    awkward_data: dict[str, Path], tmp_path: Path, captured_run: dict
) -> None:
    from rtdetr.convert import save_model
    from rtdetr.models import create_model

    ckpt = save_model(create_model("rtdetr_r18vd", num_classes=4, **TINY_MODEL), tmp_path / "start.pth")
    recipe = tmp_path / "tiny.yaml"
    body = "\n".join(f"{k.split('=')[0]}: {k.split('=')[1]}" for k in TRAIN_TAIL if k.startswith("train."))
    recipe.write_text("train:\n" + "\n".join("  " + line.split(".", 1)[1] for line in body.splitlines()) + "\n")
    with pytest.raises(RunCaptured):
        RTDETR(ckpt).train(awkward_data["train"], recipe=recipe, epochs=1, output=tmp_path / "r", minutes=1.5)
    assert captured_run["cfg"].init_from == str(ckpt)
    assert captured_run["cfg"].data.train == str(awkward_data["train"])
    assert captured_run["cfg"].train.time_budget_s == 90.0  # minutes=, as `rtdetr train --minutes`


def test_api_train_keywords_go_to_their_section_or_name_the_right_one(
    awkward_data: dict[str, Path], tmp_path: Path, captured_run: dict
) -> None:
    import dataclasses

    from rtdetr.config import TrainConfig

    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert not train_names & {f.name for f in dataclasses.fields(DataConfig)}  # a keyword has one home
    det = RTDETR("rtdetr_r18vd", num_classes=4, **TINY_MODEL)
    with pytest.raises(RunCaptured):
        det.train(awkward_data["train"], workers=0, augment=True, mosaic=0.5, lr=2e-4, batch_size=2,
                  output_dir=tmp_path / "r")  # fmt: skip
    cfg = captured_run["cfg"]
    assert (cfg.data.workers, cfg.data.augment, cfg.data.mosaic) == (0, True, 0.5)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.output_dir) == (2e-4, 2, str(tmp_path / "r"))
    for given, says in [("size", "image_size="), ("imgsz", "image_size="), ("lrr", "lr="), ("worker", "workers="),
                        ("threads", "torch.set_num_threads"), ("train", "data=")]:  # fmt: skip
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{given}': did you mean {says}"):
            det.train(awkward_data["train"], **{given: 1})
    with pytest.raises(TypeError, match="'zzz' \\(not a train or data setting\\)"):
        det.train(awkward_data["train"], zzz=1)


def test_serve_config_validates_itself() -> None:
    pytest.importorskip("fastapi")
    from rtdetr.serve import ServeConfig

    with pytest.raises(ValueError, match="decode_workers must be >= 1"):
        ServeConfig(decode_workers=0)
    for wait in (-1, float("nan"), float("inf")):  # NaN passed 'wait < 0'; inf waited for ever
        with pytest.raises(ValueError, match="max_wait_ms must be a number >= 0"):
            ServeConfig(max_wait_ms=wait)
    for mb in (0, float("nan"), float("inf")):  # inf: int(inf) raised OverflowError in max_upload_bytes
        with pytest.raises(ValueError, match="max_upload_mb must be a number > 0"):
            ServeConfig(max_upload_mb=mb)
