from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rtdetr.config import RunConfig, TrainConfig
from rtdetr.defaults import (
    FAST_SMALL,
    FAST_SMALL_FEW_OBJECTS,
    FEW_OBJECTS_PER_IMAGE,
    LOW_MATCHES_LR,
    MIN_MATCHES_PER_STEP,
    OFFICIAL,
    SMALL_DATASET_IMAGES,
    resolve_defaults,
)
from rtdetr.recipe import load_recipe
from tests.conftest import load_benchmark


def _resolved(n_images: int, *overrides: str, boxes: int | None = None) -> tuple:
    cfg = load_recipe(None, ["data.train=x", *overrides])
    return resolve_defaults(cfg, n_images, boxes)


def _values(cfg) -> dict:  # noqa: ANN001
    return {k: getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) for k in FAST_SMALL}


def test_small_dataset_from_scratch_gets_the_fast_recipe() -> None:
    cfg, why = _resolved(205, "train.time_budget_s=600")
    assert cfg.train.recipe_defaults == "fast_small" and "205 training images" in why
    assert _values(cfg) == FAST_SMALL
    # the measured recipe (README A/B), pinned as literals: batch 4, AdamW 1e-3 for the backbone too (round 5)
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.backbone_lr) == (4, 1e-3, 1e-3)
    # one scale, no distort/zoom/crop, as every round measured it (round 9: with both, 0.04 AP at 10 minutes)
    assert (cfg.data.augment, cfg.data.multi_scale) == (False, False)
    assert "no distort/zoom/crop and one scale (data.augment=true, data.multi_scale=true to change)" in why
    edge, _ = _resolved(SMALL_DATASET_IMAGES)  # "small" includes the limit itself
    assert edge.train.recipe_defaults == "fast_small"
    no_budget, _ = _resolved(205)
    assert no_budget.train.schedule_over == "epochs"  # a cosine over the epochs when there is no time budget
    assert no_budget.train.schedule == "cosine" and no_budget.data.mosaic == FAST_SMALL["data.mosaic"]


@pytest.mark.parametrize(
    "n_images, overrides, reason",
    [
        (SMALL_DATASET_IMAGES + 1, (), "> 2000"),
        (100, ("init_from=coco.pth", "model.name=rtdetr_r18vd"), "fine-tuning"),  # named: the file is not read
        (100, ("train.recipe_defaults=official",), "set by train.recipe_defaults"),
    ],
)
def test_large_data_fine_tuning_or_asked_get_the_official_recipe(n_images: int, overrides: tuple, reason: str) -> None:
    cfg, why = _resolved(n_images, *overrides)
    assert cfg.train.recipe_defaults == "official" and reason in why
    assert _values(cfg) == {k: v for k, v in OFFICIAL.items()}
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.backbone_lr) == (16, 1e-4, 1e-5)  # RT-DETR's own
    assert (cfg.data.augment, cfg.data.multi_scale) == (True, True) and "one scale" not in why


@pytest.mark.parametrize(
    "n_images, boxes, expected",
    [
        (205, 2804, (4, 1e-3, 1e-3)),  # BCCD: 13.7 objects per image, batch 4 (README rounds 2 and 5)
        (800, 2738, (16, 1e-3, 1e-3)),  # the demo's shapes: 3.4 per image, batch 16 and 1e-3 (README round 4)
        (100, 700, (4, 1e-3, 1e-3)),  # exactly 7 per image: the limit is "fewer than"; 28 per step: 1e-3
        (100, 699, (16, 1e-3, 1e-3)),
        (100, 175, (16, 1e-3, 1e-3)),  # 1.75 per image: batch 16 holds exactly 28 per step
        (100, 174, (16, 4e-4, 4e-4)),  # 27.8 per step: the LR that learned with few matches
        (100, 0, (16, 4e-4, 4e-4)),  # no objects at all (background images only)
        (100, None, (4, 1e-3, 1e-3)),  # objects unknown: the base table
    ],
)
def test_fast_small_takes_a_larger_batch_when_images_hold_few_objects(
    n_images: int, boxes: int | None, expected: tuple
) -> None:
    cfg, why = _resolved(n_images, boxes=boxes)
    assert cfg.train.recipe_defaults == "fast_small"
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.backbone_lr) == expected
    assert FEW_OBJECTS_PER_IMAGE == 7.0 and FAST_SMALL_FEW_OBJECTS == {"train.batch_size": 16}
    assert (MIN_MATCHES_PER_STEP, LOW_MATCHES_LR) == (28.0, 4e-4)
    assert ("objects per image" in why) == (boxes is not None)
    if boxes is not None:
        assert f"batch {expected[0]}" in why and f"{boxes / n_images:.1f} objects per image" in why
        assert f"{expected[0] * boxes / n_images:.0f} per step" in why and f"lr {expected[1]:g}" in why


def test_few_objects_change_neither_the_official_recipe_nor_settings_given() -> None:
    big, _ = _resolved(SMALL_DATASET_IMAGES + 1, boxes=SMALL_DATASET_IMAGES)  # 1 per image, but large: official
    assert (big.train.recipe_defaults, big.train.batch_size, big.train.lr) == ("official", 16, 1e-4)
    mine, why = _resolved(800, "train.lr=5e-4", boxes=2738)  # an LR set: batch 16 and the backbone's 1e-3 still
    assert (mine.train.batch_size, mine.train.lr, mine.train.backbone_lr) == (16, 5e-4, 1e-3)
    assert mine.train.schedule == "cosine" and "lr 0.0005" in why  # the log says the LR the run gets
    # a batch set: the LR follows the objects per step (1e-3 at batch 4 on the demo never left the plateau, round 4)
    four, why = _resolved(800, "train.batch_size=4", boxes=2738)  # 14 per step
    assert (four.train.batch_size, four.train.lr, four.train.backbone_lr) == (4, 4e-4, 4e-4)
    assert "batch 4, 14 per step (< 28): lr 0.0004" in why
    sixteen, _ = _resolved(800, "train.batch_size=16", boxes=2738)  # 55 per step: what the demo learned best at
    assert (sixteen.train.batch_size, sixteen.train.lr) == (16, 1e-3)
    two, _ = _resolved(205, "train.batch_size=2", boxes=2804)  # BCCD at batch 2: 27.4 per step
    assert (two.train.lr, two.train.backbone_lr) == (4e-4, 4e-4)
    acc, why = _resolved(205, "train.batch_size=2", "train.accumulate=2", boxes=2804)  # per optimizer step: 54.7
    assert (acc.train.lr, acc.train.backbone_lr) == (1e-3, 1e-3) and "55 per step" in why
    own, _ = _resolved(205, "train.batch_size=2", "train.backbone_lr=1e-4", boxes=2804)  # the one set stays
    assert (own.train.lr, own.train.backbone_lr) == (4e-4, 1e-4)


def test_values_set_by_the_user_win() -> None:
    cfg, _ = _resolved(100, "data.mosaic=0.1", "train.cls_loss=vfl", "train.schedule=constant", "train.batch_size=8")
    assert (cfg.data.mosaic, cfg.train.cls_loss, cfg.train.schedule) == (0.1, "vfl", "constant")
    assert (cfg.train.batch_size, cfg.train.lr) == (8, FAST_SMALL["train.lr"])  # one of the three set: the rest stay
    assert cfg.data.mixup == FAST_SMALL["data.mixup"]  # the rest still from the recipe
    aug, why = _resolved(100, "data.augment=true")
    assert (aug.data.augment, aug.data.multi_scale) == (True, False)
    assert why.endswith("; one scale (data.multi_scale=true to change)")
    big, _ = _resolved(10**5, "train.recipe_defaults=fast_small")
    assert big.train.warmup_share == 0.3 and big.train.schedule == "cosine"


def test_a_no_aug_tail_longer_than_the_run_covers_it_and_is_said() -> None:
    """`-c recipe.yaml --epochs 1` with the recipe's no_aug_epochs 3 was a ConfigError; now every epoch is in the
    tail, said, and the saved value is the epochs."""
    cfg, why = _resolved(5000, "train.epochs=1", "train.no_aug_epochs=3")
    assert cfg.train.no_aug_epochs == 1
    assert why.endswith("; no_aug_epochs 3 is more than the 1 epoch(s): none trains with strong augmentation")
    kept, why = _resolved(5000, "train.epochs=4", "train.no_aug_epochs=3")
    assert kept.train.no_aug_epochs == 3 and "no_aug_epochs" not in why


def test_the_run_saves_the_resolved_recipe(tmp_path: Path) -> None:
    from rtdetr.data.synthetic import make_synthetic_coco
    from rtdetr.engine.trainer import Trainer
    from tests.engine.conftest import TINY

    data = make_synthetic_coco(tmp_path / "d", num_train=4, num_val=2, size=64, seed=3)
    tiny = [o for o in TINY if not o.startswith("train.recipe_defaults")]
    cfg = load_recipe(None, [*tiny, f"data.train={data['train']}", f"train.output_dir={tmp_path / 'run'}"])
    tr = Trainer(cfg)
    saved = yaml.safe_load((tr.out_dir / "config.yaml").read_text())
    assert saved["train"]["recipe_defaults"] == "fast_small" and saved["data"]["mosaic"] == FAST_SMALL["data.mosaic"]
    assert (tr.cfg.train.batch_size, tr.cfg.train.lr) == (2, 1e-3)  # TINY's, not the recipe's
    assert tr.cfg.train.warmup_share == 0.3 and tr.criterion.cls_loss == "vfl" and tr.train_set.mix is None
    assert saved["data"]["augment"] is False  # and the pipeline has no distort/zoom/crop
    assert [type(op).__name__ for op in tr.train_set.transforms.ops] == ["HorizontalFlip", "Resize", "Sanitize"]
    log = (tr.out_dir / "log.txt").read_text()
    assert "fast_small" in log
    boxes = tr.train_index.num_boxes()  # the trainer hands the training set's objects to the defaults
    assert boxes > 0 and f"{boxes / 4:.1f} objects per image" in log


def test_the_benchmark_recipes_resolve_as_its_rounds_ran_them() -> None:
    """``benchmarks/recipe_ab.py``: ``fast_small`` stays the table rounds 2 to 5 measured (4e-4), ``auto`` is what
    ``rtdetr train`` gives the data, ``official`` the project's pre-fast_small recipe."""
    mod = load_benchmark("recipe_ab")

    def got(dataset: str, name: str, images: int, boxes: int) -> tuple:
        overrides = ["data.train=x", "train.time_budget_s=900", *mod.recipe(dataset, name)]  # as recipe_ab runs them
        cfg, _ = resolve_defaults(load_recipe(None, overrides), images, boxes)
        return cfg.train.recipe_defaults, cfg.train.batch_size, cfg.train.lr, cfg.train.backbone_lr

    assert got("bccd", "fast_small", 205, 2804) == ("fast_small", 4, 4e-4, 4e-4)
    assert got("demo", "fast_small", 800, 2738) == ("fast_small", 4, 4e-4, 4e-4)
    assert got("bccd", "auto", 205, 2804) == ("fast_small", 4, 1e-3, 1e-3)
    assert got("demo", "auto", 800, 2738) == ("fast_small", 16, 1e-3, 1e-3)
    assert got("bccd", "official", 205, 2804) == ("official", 8, 4e-4, 4e-4)
    assert got("demo", "official", 800, 2738) == ("official", 16, 1e-3, 1e-3)
    assert got("bccd", "cli", 205, 2804) == ("fast_small", 4, 1e-3, 1e-3)
    assert got("demo", "cli", 800, 2738) == ("fast_small", 16, 1e-3, 1e-3)


def test_the_benchmark_cli_arm_is_what_rtdetr_train_gives() -> None:
    """``cli`` sets nothing the command line leaves at its default: its config equals the one ``rtdetr train
    --model rtdetr_r18vd --data ... --minutes 15`` loads. Resolved for BCCD, it trains with the warm-ups and EMA
    that every A/B round gave ``auto`` (BCCD_RECIPE's), so the README's figures are what a user's run gets."""
    mod = load_benchmark("recipe_ab")
    updates = {"model": {"name": "rtdetr_r18vd"}, "data": {"train": "x"}, "train": {"time_budget_s": 900.0}}
    from_cli = load_recipe(None, [], updates)
    assert load_recipe(None, ["data.train=x", "train.time_budget_s=900", *mod.recipe("bccd", "cli")]) == from_cli
    assert mod._epochs("bccd", "cli") == from_cli.train.epochs

    def ramps(cfg: RunConfig) -> tuple:
        t = resolve_defaults(cfg, 205, 2804)[0].train
        return t.warmup_iters, t.warmup_share, t.ema_decay, t.ema_warmups

    auto = load_recipe(None, ["data.train=x", "train.time_budget_s=900", *mod.recipe("bccd", "auto")])
    assert ramps(from_cli) == ramps(auto) == (100, 0.3, 0.999, 200)


def test_the_warmups_and_ema_are_the_recipes() -> None:
    """Unset, the LR warm-up and the EMA take the recipe's values (official: RT-DETR's 2000 steps and 0.9999 over
    2000; fast_small: 100 and 0.999 over 200); set, they stay; unresolved, a TrainConfig uses the official ones."""
    official = load_recipe(None, ["data.train=x", "train.recipe_defaults=official"])
    t = resolve_defaults(official, 205, 2804)[0].train
    assert (t.warmup_iters, t.ema_decay, t.ema_warmups) == (2000, 0.9999, 2000)
    mine = load_recipe(None, ["data.train=x", "train.warmup_iters=7", "train.ema_decay=0.5", "train.ema_warmups=9"])
    t = resolve_defaults(mine, 205, 2804)[0].train
    assert (t.recipe_defaults, t.warmup_iters, t.ema_decay, t.ema_warmups) == ("fast_small", 7, 0.5, 9)
    assert (TrainConfig().warmup_steps, TrainConfig().ema_ramp) == (2000, (0.9999, 2000))
    assert TrainConfig(warmup_iters=0, ema_decay=0.0, ema_warmups=0).ema_ramp == (0.0, 0)  # 0 is not None
    assert TrainConfig(warmup_iters=0).warmup_steps == 0
