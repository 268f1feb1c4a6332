import math

import pytest
import torch

from rtdetr.config import TrainConfig
from rtdetr.engine.ema import ModelEMA
from rtdetr.engine.optim import lr_factor, param_groups
from rtdetr.models import create_model


def test_param_groups_backbone_lr_and_no_decay() -> None:
    model = create_model("rtdetr_r18vd")  # trainable backbone BatchNorm
    groups = {g["name"]: g for g in param_groups(model, TrainConfig(lr=1e-4, backbone_lr=1e-5))}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    frozen = {g["name"] for g in param_groups(create_model("rtdetr_r50vd"), TrainConfig(lr=1e-4, backbone_lr=1e-5))}
    assert "backbone_no_decay" not in frozen  # FrozenBN holds buffers, not parameters
    assert groups["backbone"]["lr"] == 1e-5 and groups["head"]["lr"] == 1e-4
    assert groups["head_no_decay"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == 1e-4
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == n_trainable
    ln = model.decoder.decoder.layers[0].norm1.weight
    assert any(p is ln for p in groups["head_no_decay"]["params"])


def test_lr_schedules() -> None:
    cfg = TrainConfig(epochs=10, warmup_iters=10)
    assert lr_factor(0, cfg, 100) == pytest.approx(0.1) and lr_factor(500, cfg, 100) == 1.0
    cos = TrainConfig(epochs=10, warmup_iters=0, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, cos, 10) == 1.0 and lr_factor(100, cos, 10) == pytest.approx(0.1)
    step = TrainConfig(epochs=10, warmup_iters=0, schedule="step", milestones=(2, 4))
    assert [lr_factor(s, step, 10) for s in (0, 25, 45)] == pytest.approx([1.0, 0.1, 0.01])


def test_cosine_over_a_time_budget_follows_the_time_used() -> None:
    t = TrainConfig(epochs=1000, warmup_iters=0, schedule="cosine", min_lr_ratio=0.1, schedule_over="time",
                    time_budget_s=100.0)  # fmt: skip
    # the step count (here 1 of 1000 epochs x 10) says nothing: the share of the budget used decides
    assert lr_factor(5, t, 10, time_used=0.0) == 1.0
    assert lr_factor(5, t, 10, time_used=50.0) == pytest.approx(0.55)
    assert lr_factor(5, t, 10, time_used=100.0) == pytest.approx(0.1)
    assert lr_factor(5, t, 10, time_used=500.0) == pytest.approx(0.1)
    by_epochs = TrainConfig(epochs=1000, warmup_iters=0, schedule="cosine", min_lr_ratio=0.1, time_budget_s=100.0)
    assert lr_factor(5, by_epochs, 10, time_used=50.0) == pytest.approx(1.0, abs=1e-4)


def test_flat_cosine_and_the_warm_up_share() -> None:
    flat = TrainConfig(epochs=10, warmup_iters=0, schedule="flat_cosine", flat_share=0.6, min_lr_ratio=0.0)
    # full LR for the first 60% of the 100 steps, then a cosine over the remaining 40%
    assert [lr_factor(s, flat, 10) for s in (0, 59, 60, 80, 100)] == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.0])
    capped = TrainConfig(epochs=10, warmup_iters=500, warmup_share=0.3)
    assert lr_factor(14, capped, 10) == pytest.approx(0.5)  # 500 capped at 30% of 100 steps: 15 of 30 done
    assert lr_factor(14, TrainConfig(epochs=10, warmup_iters=500), 10) == pytest.approx(1.0)  # default cap 10%


def test_ema_ramp_and_tracking() -> None:
    model = torch.nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.9, warmups=1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.module.weight, torch.ones(2, 2), atol=1e-4)
    assert ema.current_decay() == pytest.approx(0.9)
    restored = ModelEMA(model, 0.9, 1)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 200


def test_warmups_scale_to_short_runs() -> None:
    """160 images at batch 16 for 72 epochs is 720 steps: the official 2000-step warm-up would never end."""
    from rtdetr.config import TrainConfig
    from rtdetr.engine.optim import effective_warmups, lr_factor

    cfg = TrainConfig(epochs=72)  # warmup_iters = ema_warmups = 2000, as official
    assert effective_warmups(cfg, 10) == (72, 144)  # 10% and 20% of 720 steps
    assert lr_factor(9, cfg, 10) < 0.2 and lr_factor(71, cfg, 10) == 1.0 and lr_factor(700, cfg, 10) == 1.0
    assert effective_warmups(cfg, 7330) == (2000, 2000)  # COCO-sized runs keep the official schedule
    assert effective_warmups(TrainConfig(epochs=1, warmup_iters=0), 5) == (0, 1)


def test_short_run_warns(tiny_data: dict, tmp_path) -> None:  # noqa: ANN001
    from rtdetr.engine.trainer import Trainer
    from tests.engine.conftest import tiny_config

    Trainer(tiny_config(tiny_data, tmp_path / "short", "train.epochs=2", "train.warmup_iters=2000"))
    text = (tmp_path / "short" / "log.txt").read_text()
    assert "rtdetr_r18vd at 64x64: 8 optimizer steps (2 epochs x 4); lr warm-up 1 step," in text
    assert "too short to train a detector from scratch" in text


def test_the_trainer_ema_takes_the_recipe_decay(tiny_data: dict, tmp_path) -> None:  # noqa: ANN001
    """The EMA decays towards the resolved ``ema_decay``: fast_small's 0.999, the official 0.9999, a set value."""
    from rtdetr.engine.trainer import Trainer
    from tests.engine.conftest import tiny_config

    for recipe, extra, decay in (("fast_small", (), 0.999), ("official", (), 0.9999),
                                 ("fast_small", ("train.ema_decay=0.95",), 0.95)):  # fmt: skip
        out = tmp_path / f"{recipe}{len(extra)}"
        tr = Trainer(tiny_config(tiny_data, out, f"train.recipe_defaults={recipe}", *extra))
        assert tr.ema is not None and tr.ema.decay == decay == tr.cfg.train.ema_decay
        assert f"EMA {decay:g} warming up over 2 " in (out / "log.txt").read_text()


def _trajectory(make_opt, steps: int = 10) -> torch.Tensor:  # noqa: ANN001
    """Parameters of the tiny model after ``steps`` optimizer steps on one fixed batch (the same every call)."""
    from rtdetr.loss import RTDETRCriterion
    from tests.engine.conftest import TINY_MODEL
    from tests.engine.test_learns import _batch

    torch.manual_seed(0)
    model = create_model("rtdetr_r18vd", num_classes=3, **TINY_MODEL).train()
    opt = make_opt(model)
    images, targets = _batch()
    for i in range(steps):
        torch.manual_seed(i)  # the same denoising groups for every optimizer
        loss = sum(RTDETRCriterion(3)(model(images, targets), targets).values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1, foreach=True)
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_optimizer_update_is_the_reference_adamw() -> None:
    """The trainer's optimizer (multi-tensor AdamW) follows the per-tensor reference AdamW step for step. The CPU
    fused kernel does not (it drifted by ~1e-3 within 5 steps and then trained to 1.5x the loss in 150 steps):
    the same check catches it."""
    from rtdetr.engine.optim import build_optimizer

    cfg = TrainConfig(lr=1e-3, backbone_lr=1e-3)

    def reference(m: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(param_groups(m, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)

    def fused(m: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(param_groups(m, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)

    ref = _trajectory(reference)
    ours = _trajectory(lambda m: build_optimizer(m, cfg))
    assert (ours - ref).abs().max() < 1e-5
    assert (_trajectory(fused) - ref).abs().max() > 1e-5  # the broken variant fails the same bound


def test_the_cosine_starts_where_anneal_from_says() -> None:
    t = TrainConfig(epochs=1000, warmup_iters=0, schedule="cosine", min_lr_ratio=0.0, schedule_over="time",
                    time_budget_s=100.0)  # fmt: skip
    # not found yet: the peak LR however much of the budget is used
    assert [lr_factor(5, t, 10, time_used=u, anneal_from=None) for u in (0.0, 60.0, 100.0)] == [1.0, 1.0, 1.0]
    # found at 60 s: the cosine spans the remaining 40 s (half-way at 80 s), not the whole budget
    assert lr_factor(5, t, 10, time_used=60.0, anneal_from=(50, 60.0)) == pytest.approx(1.0)
    assert lr_factor(5, t, 10, time_used=80.0, anneal_from=(50, 60.0)) == pytest.approx(0.5)
    assert lr_factor(5, t, 10, time_used=100.0, anneal_from=(50, 60.0)) == pytest.approx(0.0)
    assert lr_factor(5, t, 10, time_used=80.0) == pytest.approx(0.5 * (1 + math.cos(0.8 * math.pi)))  # from 0
    by_steps = TrainConfig(epochs=10, warmup_iters=0, schedule="cosine", min_lr_ratio=0.0)  # 100 steps
    assert lr_factor(40, by_steps, 10, anneal_from=(40, 0.0)) == pytest.approx(1.0)
    assert lr_factor(70, by_steps, 10, anneal_from=(40, 0.0)) == pytest.approx(0.5)
    assert lr_factor(70, by_steps, 10, anneal_from=None) == 1.0
    # the warm-up still applies while waiting
    warm = TrainConfig(epochs=10, warmup_iters=10, schedule="cosine")
    assert lr_factor(4, warm, 10, anneal_from=None) == pytest.approx(0.5)


def test_the_progress_bar_counts_the_epochs_a_time_budget_holds() -> None:
    from rtdetr.engine.logger import epoch_desc

    assert epoch_desc(1, 72, None, 32) == "epoch 1/72"  # the pace not yet measured
    assert epoch_desc(2, 72, 82, 32) == "epoch 2/~3 (time budget)"  # 82 steps of 32 an epoch: the third cut short
    assert epoch_desc(2, 72, 96, 32) == "epoch 2/~3 (time budget)"
    assert epoch_desc(5, 72, 82, 32) == "epoch 5/~5 (time budget)"  # faster than measured: never below the current
    assert epoch_desc(3, 4, 500, 32) == "epoch 3/4"  # the budget holds more than the schedule: the epochs end it


def test_eta_note_counts_epochs_and_the_budget() -> None:
    from rtdetr.engine.logger import eta_note

    assert eta_note(600.0, 2, 10) == "; about 50 min left (10 epochs)"  # 5 min per epoch
    assert eta_note(3900.0, 1, 1) == "; about 1 h 05 min left (1 epoch)"
    assert eta_note(20.0, 1, 1) == "; about 1 min left (1 epoch)"  # never "0 min"
    assert eta_note(600.0, 2, 10, budget_left_s=900.0) == "; about 15 min left (the time budget's end)"
    assert eta_note(600.0, 2, 0) == eta_note(600.0, 2, 3, budget_left_s=0.0) == ""  # nothing left to run


#: Each shipped COCO recipe's groups as the official code builds them from the config the recipe reproduces:
#: {(lr, weight_decay): trainable tensors}, recorded by benchmarks/official_param_groups.py (the official
#: YAMLConfig.optimizer in the official code, results_official_param_groups.json), plus parameters whose group
#: shows a quirk of the official patterns.
OFFICIAL_GROUPS = {
    "rtdetrv2_r18vd_120e_coco": {(1e-4, 0.0): 162, (1e-4, 1e-4): 164},
    "rtdetrv2_r34vd_120e_coco": {(5e-5, 1e-4): 39, (5e-5, 0.0): 78, (1e-4, 0.0): 181, (1e-4, 1e-4): 106},
    "rtdetrv2_r50vd_m_7x_coco": {(1e-5, 1e-4): 52, (1e-4, 0.0): 134, (1e-4, 1e-4): 213},
    "rtdetrv2_r50vd_6x_coco": {(1e-5, 1e-4): 52, (1e-4, 0.0): 126, (1e-4, 1e-4): 209},
    "rtdetrv2_r101vd_6x_coco": {(1e-6, 1e-4): 103, (1e-4, 0.0): 126, (1e-4, 1e-4): 209},
    "rtdetrv2_hgnetv2_l_6x_coco": {(5e-6, 1e-4): 75, (1e-4, 0.0): 126, (1e-4, 1e-4): 209},
    "rtdetrv2_hgnetv2_x_6x_coco": {(1e-6, 1e-4): 125, (1e-4, 0.0): 126, (1e-4, 1e-4): 209},
    "rtdetr_r18vd_6x_coco": {(1e-5, 0.0): 46, (1e-5, 1e-4): 23, (1e-4, 0.0): 159, (1e-4, 1e-4): 98},
    "rtdetr_r34vd_6x_coco": {(1e-5, 0.0): 78, (1e-5, 1e-4): 39, (1e-4, 0.0): 177, (1e-4, 1e-4): 110},
    "rtdetr_r50vd_m_6x_coco": {(1e-5, 1e-4): 52, (1e-4, 0.0): 213, (1e-4, 1e-4): 134},
    "rtdetr_r50vd_6x_coco": {(1e-5, 1e-4): 52, (1e-4, 0.0): 205, (1e-4, 1e-4): 130},  # (+ an empty group)
    "rtdetr_r101vd_6x_coco": {(1e-6, 1e-4): 103, (1e-4, 0.0): 118, (1e-4, 1e-4): 217},
}
OFFICIAL_QUIRKS = {
    # biases keep their weight decay in RT-DETRv2's configs
    "rtdetrv2_r18vd_120e_coco": {"decoder.dec_bbox_head.0.layers.0.bias": (1e-4, 1e-4),
                                 "backbone.conv1.conv1_1.norm.weight": (1e-4, 0.0)},
    "rtdetrv2_r50vd_6x_coco": {"decoder.dec_bbox_head.0.layers.0.bias": (1e-4, 1e-4),
                               "backbone.res_layers.0.blocks.0.branch2a.conv.weight": (1e-5, 1e-4)},
    # a LayerNorm and a BatchNorm named by index ('enc_output.1', 'input_proj.0.1') contain no 'norm': decayed
    "rtdetr_r18vd_6x_coco": {"decoder.enc_output.1.weight": (1e-4, 1e-4), "encoder.input_proj.0.1.weight": (1e-4, 1e-4),
                             "decoder.dec_bbox_head.0.layers.0.bias": (1e-4, 0.0)},
}  # fmt: skip


def test_every_coco_recipe_has_its_official_groups() -> None:
    from rtdetr.recipe import bundled_recipes

    assert {r for r in bundled_recipes() if r.endswith("_coco")} == set(OFFICIAL_GROUPS)


@pytest.mark.parametrize("recipe", sorted(OFFICIAL_GROUPS))
def test_coco_recipes_group_parameters_as_the_official_configs(recipe: str) -> None:
    from rtdetr.models import build_model
    from rtdetr.recipe import load_recipe

    run = load_recipe(recipe)
    model = build_model(run.model)
    groups = param_groups(model, run.train)
    sizes: dict[tuple[float, float], int] = {}
    for g in groups:
        key = (g["lr"], g["weight_decay"])
        sizes[key] = sizes.get(key, 0) + len(g["params"])
    assert sizes == OFFICIAL_GROUPS[recipe]
    settings = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    quirks = OFFICIAL_QUIRKS.get(recipe, {})
    assert {n: settings[id(named[n])] for n in quirks} == quirks
    assert groups[0]["name"] == "others" and groups[0]["lr"] == run.train.lr  # the LR the trainer shows


def test_param_group_rules_are_checked(caplog: pytest.LogCaptureFixture) -> None:
    from rtdetr.config import ConfigError, ParamGroupRule, from_dict
    from rtdetr.recipe import load_recipe

    model = create_model("rtdetr_r18vd")
    both = TrainConfig(lr=1e-4, param_groups=(ParamGroupRule("backbone", lr=1e-5), ParamGroupRule("conv1")))
    with pytest.raises(ValueError, match=r"'backbone.conv1.conv1_1.conv.weight' matches train.param_groups\[0\] "
                                         r"\('backbone'\) and \[1\] \('conv1'\)"):  # fmt: skip
        param_groups(model, both)
    with caplog.at_level("WARNING", logger="rtdetr"):
        groups = param_groups(model, TrainConfig(lr=1e-4, param_groups=(ParamGroupRule("backbon3", lr=0.0),)))
    assert "train.param_groups[0] ('backbon3') matches no name in the model" in caplog.text
    assert [g["name"] for g in groups] == ["others"]
    caplog.clear()  # a rule of frozen norms only (their affine and statistics are buffers): no warning
    r50 = load_recipe("rtdetr_r50vd_6x_coco")
    with caplog.at_level("DEBUG", logger="rtdetr"):
        param_groups(create_model("rtdetr_r50vd"), r50.train)
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [("DEBUG", "train.param_groups[1] ('^(?=.*backbone)(?=.*(?:norm|bn)).*$') matches no trainable "
                              "parameter: no such group")]  # fmt: skip
    with pytest.raises(ConfigError, match=r"train.param_groups\[0\]: match '\^\(\?=' is not a regular expression"):
        from_dict(TrainConfig, {"param_groups": [{"match": "^(?="}]}, "train")
    with pytest.raises(ConfigError, match="unknown config key 'train.param_groups\\[0\\].params'"):
        from_dict(TrainConfig, {"param_groups": [{"params": "backbone"}]}, "train")
    for clash in ({"backbone_lr": 1e-5}, {"no_decay_norm_bias": False}):
        with pytest.raises(ConfigError, match="leave backbone_lr and no_decay_norm_bias unset"):
            TrainConfig(lr=1e-4, param_groups=(ParamGroupRule("backbone"),), **clash)  # type: ignore[arg-type]
    # frozen parameters stay out; everything trainable is in exactly one group
    frozen = create_model("rtdetr_r50vd")
    rules = TrainConfig(lr=1e-4, param_groups=(ParamGroupRule("^(?=.*backbone)", lr=1e-5),))
    held = [p for g in param_groups(frozen, rules) for p in g["params"]]
    assert len(held) == len({id(p) for p in held}) == sum(p.requires_grad for p in frozen.parameters())


def test_param_group_rules_reach_the_optimizer_and_the_defaults() -> None:
    from rtdetr.config import ParamGroupRule, RunConfig
    from rtdetr.defaults import resolve_defaults
    from rtdetr.engine.optim import build_optimizer, describe_schedule

    model = create_model("rtdetr_r18vd")
    rules = (ParamGroupRule("^(?=.*backbone)", lr=2e-5, weight_decay=0.0),)
    resolved, _ = resolve_defaults(RunConfig(train=TrainConfig(param_groups=rules)), 5000)
    assert resolved.train.backbone_lr is None and resolved.train.lr == 1e-4  # the official table, no backbone_lr
    opt = build_optimizer(model, resolved.train)
    backbone = {id(p) for p in model.backbone.parameters()}
    for g in opt.param_groups:
        inside = {id(p) in backbone for p in g["params"]}
        assert inside == ({True} if g["name"] == "rule0" else {False})
        assert (g["lr"], g["weight_decay"]) == ((2e-5, 0.0) if g["name"] == "rule0" else (1e-4, 1e-4))
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.01)  # the warm-up's first step, as the trainer's
    plan, _ = describe_schedule(resolved.train, 100, opt)
    assert "optimizer groups (train.param_groups): others 2" in plan and "rule0 " in plan and "lr 2e-05 wd 0" in plan
