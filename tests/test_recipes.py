"""Every shipped recipe loads and validates; the demo runs end to end on a tiny budget."""

import json
from pathlib import Path

import pytest

from rtdetr.config import ConfigError, RunConfig
from rtdetr.recipe import RECIPES_DIR, load_recipe

CONFIGS = sorted(RECIPES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_recipe_loads(path: Path) -> None:
    cfg = load_recipe(path)
    assert isinstance(cfg, RunConfig) and cfg.data.train and cfg.train.epochs > 0


def test_shipped_recipes_by_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recipes ship inside the package: a pip-installed user runs ``-c fast_small`` anywhere (they lived in the
    repository's configs/, which a wheel does not carry); a file of that name where the user is still wins."""
    assert {p.stem for p in CONFIGS} >= {"fast_small", "rtdetrv2_r18vd_120e_coco", "finetune_custom"}
    monkeypatch.chdir(tmp_path)
    fast = load_recipe("fast_small")
    assert fast.train.recipe_defaults == "fast_small" and fast.data.image_size == (320, 320)
    for spelling in ("fast_small.yaml", "configs/fast_small.yaml"):  # the README's old paths still work
        assert load_recipe(spelling) == fast
    assert load_recipe("finetune_custom").train.epochs == load_recipe("finetune_custom.yaml").train.epochs
    (tmp_path / "fast_small.yaml").write_text("model:\n  name: rtdetr_r34vd\ndata:\n  train: x.json\n")
    assert load_recipe("fast_small.yaml").model.backbone.depth == 34  # the user's own file
    mine = tmp_path / "mine" / "r.yaml"  # a recipe of one's own on a shipped base, by name
    mine.parent.mkdir()
    mine.write_text("base: rtdetrv2_r18vd_120e_coco\ntrain:\n  lr: 0.0002\n")
    official = load_recipe("rtdetrv2_r18vd_120e_coco")
    assert load_recipe(mine).train.lr == 2e-4 and load_recipe(mine).train.epochs == official.train.epochs
    with pytest.raises(ConfigError, match=r"fast_smal: no such recipe file, nor a shipped recipe of that name "
                       r"\(did you mean 'fast_small'\?\); shipped: .*rtdetrv2_r18vd_120e_coco"):  # fmt: skip
        load_recipe("fast_smal")
    with pytest.raises(ConfigError, match="elsewhere/fast_small.yaml: no such recipe file"):
        load_recipe("elsewhere/fast_small.yaml")  # a missing file in a folder is not swapped for a shipped one


def test_val_follows_a_replaced_training_source() -> None:
    """fast_small and finetune_custom validate on their training source's val split (train = val =
    my_dataset/data.yaml): `rtdetr train -c fast_small --data mine/data.yaml` kept the placeholder as data.val and
    stopped on "data.val: my_dataset/data.yaml: no such file or folder"."""
    for name in ("fast_small", "finetune_custom"):
        assert load_recipe(name).data.val == load_recipe(name).data.train == "my_dataset/data.yaml"
        assert load_recipe(name, updates={"data": {"train": "mine/data.yaml"}}).data.val == "mine/data.yaml"
        assert load_recipe(name, ["data.train=voc_set"]).data.val == "voc_set"  # a dotted override too
        given = load_recipe(name, updates={"data": {"train": "mine/data.yaml", "val": "other/val.json"}})
        assert (given.data.train, given.data.val) == ("mine/data.yaml", "other/val.json")  # a val given wins
    official = load_recipe("rtdetrv2_r18vd_120e_coco", updates={"data": {"train": "mine/data.yaml"}})
    assert official.data.val == "coco/annotations/instances_val2017.json"  # two sources: nothing follows


def test_data_paths_found_from_here_are_saved_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run config (saved in every checkpoint) holds the data paths absolute where they exist, so `rtdetr val
    CKPT` and `--resume` find the data from another folder; a path not found stays as written, for its error."""
    (tmp_path / "sets" / "mine").mkdir(parents=True)
    (tmp_path / "sets" / "mine" / "data.yaml").write_text("names: [a]\n")
    monkeypatch.chdir(tmp_path / "sets")
    cfg = load_recipe(None, updates={"data": {"train": "mine/data.yaml", "val": "../sets/mine"}})
    assert (cfg.data.train, cfg.data.val) == (str(tmp_path / "sets/mine/data.yaml"), str(tmp_path / "sets/mine"))
    cfg = load_recipe("fast_small", ["data.train=mine/data.yaml"])
    assert cfg.data.train == cfg.data.val == str(tmp_path / "sets/mine/data.yaml")
    assert load_recipe(None, updates={"data": {"train": "gone/data.yaml"}}).data.train == "gone/data.yaml"


def test_recipe_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: rtdetr_r18vd\ntrain:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"^\S+bad.yaml: unknown config key 'train.epochz'.*'train.epochs'"):
        load_recipe(bad)  # the file is named: its key is wrong
    bad.write_text("model:\n  name: rtdetr_r19vd\ntrain:\n  lr: abc\n")
    with pytest.raises(ConfigError, match="bad.yaml: model.name: unknown model variant 'rtdetr_r19vd'"):
        load_recipe(bad)
    bad.write_text("train:\n  lr: abc\n")
    with pytest.raises(ConfigError, match="bad.yaml: train.lr: expected a number, got 'abc'"):
        load_recipe(bad)
    bad.write_text("train:\n  lr: 0.001\n")
    with pytest.raises(ConfigError, match="^train.lr: expected a number") as e:
        load_recipe(bad, ["train.lr=abc"])  # an override's value: the file is not blamed
    assert "bad.yaml" not in str(e.value)
    bad.write_text("train:\n  schedule: cosine\n  schedule_over: time\n")  # completed by --minutes: valid
    assert load_recipe(bad, ["train.time_budget_s=300"]).train.schedule_over == "time"
    with pytest.raises(ConfigError, match="bad.yaml: train: schedule_over 'time' needs time_budget_s"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        load_recipe(None, ["train.epochs"])
    # a key without its section names the section it belongs to ('lr' used to get no hint)
    with pytest.raises(ConfigError, match=r"unknown config key 'lr' \(did you mean 'train.lr'\?\)"):
        load_recipe(None, ["lr=1e-3"])
    with pytest.raises(ConfigError, match=r"'image_size' \(did you mean 'data.image_size'\?\)"):
        load_recipe(None, ["image_size=[64,64]"])


def test_broken_recipe_files_are_one_line_errors(tmp_path: Path) -> None:
    """Bad YAML was a multi-line parser dump ('in "<unicode string>"'), and in a base recipe a traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line 2, column 1: expected ',' or ']'") as e:
        load_recipe(bad)
    assert "\n" not in str(e.value) and "unicode string" not in str(e.value)
    child = tmp_path / "child.yaml"
    child.write_text("base: bad.yaml\ntrain:\n  lr: 0.001\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML at line 2"):
        load_recipe(child)
    child.write_text("base: gone.yaml\n")
    with pytest.raises(ConfigError, match="gone.yaml: cannot read recipe"):
        load_recipe(child)


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rtdetr.demo import main

    code = main(
        [
            "--out",
            str(tmp_path),
            "--epochs",
            "1",
            "--size",
            "64",
            "--train-images",
            "8",
            "--val-images",
            "4",
            "train.batch_size=4",
            "train.progress=false",
        ]
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    # 1 epoch on 8 images (seeded) stays far below the demo's AP bar of 0.1, so the demo must report failure
    assert 0.0 <= summary["best_AP"] < 0.1 and code == 1
    assert "the demo failed: best AP 0.0" in capsys.readouterr().err  # and says why (it exited 1 in silence)
    assert summary["best_epoch"] == 1
    assert len(list((tmp_path / "predictions").glob("*.png"))) == 4
    assert (tmp_path / "run" / "best.pth").is_file() and (tmp_path / "run" / "curves.png").is_file()


def test_info_shows_a_recipe_and_checks_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``rtdetr info fast_small`` said "no variant matches"; a recipe is shown with its file, once it loads."""
    from rtdetr.cli import main

    assert main(["info", "fast_small"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"recipe {RECIPES_DIR / 'fast_small.yaml'} (valid")
    assert "time_budget_s: 1800" in out and "recipe_defaults: fast_small" in out
    assert main(["info", "fast_small", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["train"]["recipe_defaults"] == "fast_small"
    bad = tmp_path / "mine.yaml"
    bad.write_text("train:\n  lrr: 1\n")
    assert main(["info", str(bad)]) == 1
    assert f"rtdetr info: error: {bad}: unknown config key 'train.lrr' (did you mean 'train.lr'?)" in (
        capsys.readouterr().err
    )
    data_yaml = tmp_path / "data.yaml"  # a YOLO dataset file where a recipe goes: said so, for info and train -c
    data_yaml.write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b]\n")
    for argv in (["info", str(data_yaml)], ["train", "-c", str(data_yaml)]):
        assert main(argv) == 1
        assert (
            f"{data_yaml}: a dataset description (YOLO data.yaml), not a training recipe: give it as the data "
            f"(--data {data_yaml})" in capsys.readouterr().err
        )
