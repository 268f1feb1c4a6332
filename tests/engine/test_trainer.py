from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from rtdetr.convert import load_model, read_checkpoint
from rtdetr.engine.trainer import Trainer
from rtdetr.recipe import load_recipe
from tests.engine.conftest import TINY, TINY_MODEL, tiny_config


def test_fit_writes_checkpoints_logs_and_curves(tiny_data: dict, tmp_path: Path) -> None:
    result = Trainer(tiny_config(tiny_data, tmp_path / "run", "train.epochs=2", "train.channels_last=true")).fit()
    run = Path(result["output_dir"])
    for name in ("last.pth", "best.pth", "metrics.csv", "curves.png", "config.yaml", "log.txt"):
        assert (run / name).is_file(), name
    assert (run / "tensorboard").is_dir()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "AP50" in rows[0]
    ckpt = read_checkpoint(run / "last.pth")
    assert ckpt["epoch"] == 2 and ckpt["class_names"] == ["circle", "square", "triangle", "cross"]
    model = load_model(run / "best.pth")  # evaluation weights (EMA) with the embedded config
    assert model.config.num_classes == 4
    assert not list(run.glob(".*tmp"))
    # what train() returns reads as numbers, not COCO's [10, 101, K, 4, 3] precision array (a notebook printed it)
    assert set(result["last_eval"]) == {"stats", "per_class_ap", "per_class_ap50", "backend"}
    assert len(repr(result)) < 1500


def test_resume_continues_exactly(tiny_data: dict, tmp_path: Path) -> None:
    straight = Trainer(tiny_config(tiny_data, tmp_path / "a", "train.epochs=2"))
    straight.fit()
    # an interrupted run: epoch 1 only, its checkpoint written as fit() writes it
    cut = Trainer(tiny_config(tiny_data, tmp_path / "b", "train.epochs=2"))
    cut._seed_epoch(0)
    cut.train_one_epoch(0)
    ckpt = cut.checkpoint(1)
    from rtdetr.convert.checkpoint import atomic_save

    atomic_save(ckpt, tmp_path / "b" / "last.pth")
    resumed = Trainer(tiny_config(tiny_data, tmp_path / "c", "train.epochs=2", f"resume={tmp_path / 'b' / 'last.pth'}"))
    assert resumed.start_epoch == 1
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from the uninterrupted one"
    assert straight.global_step == resumed.global_step


def test_finetune_with_another_class_count(tiny_data: dict, tmp_path: Path) -> None:
    from rtdetr.convert import save_model
    from rtdetr.models import create_model

    base = create_model("rtdetr_r18vd", num_classes=80, **TINY_MODEL)
    src = save_model(base, tmp_path / "coco80.pth")
    tr = Trainer(tiny_config(tiny_data, tmp_path / "ft", "train.epochs=1", f"init_from={src}"))
    assert tr.model.decoder.dec_score_head[0].weight.shape[0] == 4
    assert torch.equal(tr.model.backbone.conv1.conv1_1.conv.weight, base.backbone.conv1.conv1_1.conv.weight)
    head = tr.model.decoder.dec_score_head[0].weight.detach().clone()
    result = tr.fit()
    assert not torch.equal(tr.model.decoder.dec_score_head[0].weight, head)  # the new head trained
    tuned = load_model(Path(result["output_dir"]) / "best.pth")
    assert tuned.config.num_classes == 4 and tuned.decoder.dec_score_head[0].weight.shape == (4, 32)
    assert read_checkpoint(Path(result["output_dir"]) / "best.pth")["class_names"][0] == "circle"


def test_nan_losses_are_skipped_then_abort(tiny_data: dict, tmp_path: Path) -> None:
    tr = Trainer(tiny_config(tiny_data, tmp_path / "nan", "train.epochs=1", "train.max_nan_steps=1"))
    real = tr.criterion.forward
    calls = {"n": 0}

    def flaky(out, targets):  # noqa: ANN001, ANN202
        calls["n"] += 1
        losses = real(out, targets)
        if calls["n"] == 1:
            losses["loss_vfl"] = losses["loss_vfl"] * float("nan")
        return losses

    tr.criterion.forward = flaky  # type: ignore[method-assign]
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    stats = tr.train_one_epoch(0)
    assert stats["skipped_steps"] == 1.0
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())  # later steps trained
    tr.criterion.forward = lambda o, t: {"loss_vfl": torch.tensor(float("nan"), requires_grad=True)}  # type: ignore
    with pytest.raises(RuntimeError, match="consecutive non-finite losses"):
        tr.train_one_epoch(0)


def test_early_stopping(tiny_data: dict, tmp_path: Path) -> None:
    tr = Trainer(
        tiny_config(
            tiny_data, tmp_path / "es", "train.epochs=5", "train.patience=1", "train.lr=1e-9", "train.backbone_lr=1e-9"
        )
    )
    tr.best_ap = 2.0  # nothing can beat it
    result = tr.fit()
    assert len(list(csv.DictReader((Path(result["output_dir"]) / "metrics.csv").open()))) == 1


def test_bad_data_path_is_a_clear_error(tmp_path: Path) -> None:
    from rtdetr.cli import main

    assert main(["train", "--data", str(tmp_path / "missing.json"), "--output", str(tmp_path / "o")]) == 1


def test_best_holds_eval_weights_only(tiny_data: dict, tmp_path: Path) -> None:
    import os
    import stat

    result = Trainer(tiny_config(tiny_data, tmp_path / "slim", "train.epochs=1")).fit()
    run = Path(result["output_dir"])
    best, last = read_checkpoint(run / "best.pth"), read_checkpoint(run / "last.pth")
    assert "optimizer" in last and not {"optimizer", "scheduler", "ema"} & set(best)
    ema = last["ema"]["module"]
    assert all(torch.equal(best["model"][k], v) for k, v in ema.items())  # the EMA weights, as evaluated
    assert (run / "best.pth").stat().st_size < 0.6 * (run / "last.pth").stat().st_size
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((run / "best.pth").stat().st_mode) == 0o666 & ~mask


def test_runs_never_overwrite_each_other(tiny_data: dict, tmp_path: Path) -> None:
    first = Trainer(tiny_config(tiny_data, tmp_path / "run", "train.epochs=1")).fit()
    stamp = (tmp_path / "run" / "last.pth").stat().st_mtime_ns
    second = Trainer(tiny_config(tiny_data, tmp_path / "run", "train.epochs=1")).fit()
    assert first["output_dir"] == str(tmp_path / "run") and second["output_dir"] == str(tmp_path / "run2")
    assert (tmp_path / "run" / "last.pth").stat().st_mtime_ns == stamp
    reused = Trainer(tiny_config(tiny_data, tmp_path / "run", "train.epochs=1", "train.exist_ok=true")).fit()
    assert reused["output_dir"] == str(tmp_path / "run")


def test_cli_resume_alone_continues_the_run_in_its_folder(
    tiny_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from rtdetr.cli import main
    from rtdetr.convert.checkpoint import atomic_save

    run = tmp_path / "my run #1"
    cut = Trainer(tiny_config(tiny_data, run, "train.epochs=2", "train.progress=false"))
    cut._seed_epoch(0)
    cut.train_one_epoch(0)
    atomic_save(cut.checkpoint(1), run / "last.pth")
    monkeypatch.chdir(tmp_path)  # a default runs/train here would show up
    assert main(["train", "--resume", str(run)]) == 0  # the run folder stands for its last.pth
    assert read_checkpoint(run / "last.pth")["epoch"] == 2 and (run / "best.pth").is_file()
    assert not (tmp_path / "runs").exists()
    assert main(["train", "--resume", str(tmp_path / "nothing.pth")]) == 1
    (tmp_path / "empty").mkdir()
    assert main(["train", "--resume", str(tmp_path / "empty")]) == 1
    assert "empty is a folder without a last.pth" in capsys.readouterr().err


def test_a_missing_or_broken_init_from_names_the_setting(tiny_data: dict, tmp_path: Path) -> None:
    """finetune_custom names the official release file: without it the run stopped on "<file>: no such checkpoint
    file", not saying which setting held it nor how to give one."""
    from rtdetr.config import ConfigError

    with pytest.raises(ConfigError, match=r"^init_from: \S*coco_48.pth: no such checkpoint file \(give the "
                       r"checkpoint to start from with --init-from PATH\)$"):  # fmt: skip
        Trainer(tiny_config(tiny_data, tmp_path / "a", f"init_from={tmp_path / 'coco_48.pth'}"))
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"^init_from: \S*broken.pth: not a readable PyTorch checkpoint") as e:
        Trainer(tiny_config(tiny_data, tmp_path / "b", f"init_from={tmp_path / 'broken.pth'}"))
    assert "--init-from PATH" not in str(e.value)  # the file is there: the hint is for a missing one


def test_init_from_another_variant_is_refused_unless_partial(tiny_data: dict, tmp_path: Path) -> None:
    from rtdetr.config import ConfigError
    from rtdetr.convert import save_model
    from rtdetr.models import create_model

    other = save_model(create_model("rtdetr_r34vd", num_classes=4, **TINY_MODEL), tmp_path / "r34.pth")
    hint = r"lacks \(the checkpoint holds rtdetr_r34vd, this run builds rtdetr_r18vd: --model rtdetr_r34vd, or model"
    with pytest.raises(ConfigError, match=hint):
        Trainer(tiny_config(tiny_data, tmp_path / "a", "train.epochs=1", f"init_from={other}"))
    tr = Trainer(
        tiny_config(tiny_data, tmp_path / "b", "train.epochs=1", f"init_from={other}", "train.partial_init=true")
    )
    log = (tmp_path / "b" / "log.txt").read_text()
    assert "tensors kept at random init" in log and "checkpoint tensors unused" in log
    assert torch.equal(
        tr.model.encoder.lateral_convs[0].conv.weight.cpu(),
        read_checkpoint(other)["model"]["encoder.lateral_convs.0.conv.weight"],
    )


def test_a_run_that_names_no_model_builds_the_init_from_checkpoints(tiny_data: dict, tmp_path: Path) -> None:
    """`rtdetr train --data X --init-from rtdetrv2_r50vd.pth` built the default R18 and refused the file; without
    a model named, the run now takes the checkpoint's architecture: an official file's inferred from its tensors
    (variant, decoder depth), ours with every width it was saved with."""
    from rtdetr.convert import save_model
    from rtdetr.models import create_model

    unnamed = [o for o in TINY if not o.startswith("model.")]
    unnamed += [f"data.train={tiny_data['train']}", f"data.val={tiny_data['val']}", "train.epochs=1"]
    official = create_model("rtdetrv2_r34vd", num_classes=80)  # no model_config: the release files' layout
    release = tmp_path / "rtdetrv2_r34vd_120e_coco.pth"
    torch.save({"ema": {"module": official.state_dict()}}, release)
    cfg = load_recipe(None, [*unnamed, f"train.output_dir={tmp_path / 'a'}", f"init_from={release}"])
    assert cfg.model.name == "rtdetrv2_r34vd" and cfg.model.decoder.num_layers == 4
    assert cfg.model.eval_spatial_size == (64, 64)  # the run's size, not the file's 640
    tr = Trainer(cfg)
    assert tr.model.decoder.dec_score_head[0].weight.shape[0] == 4  # the data's classes
    key = "encoder.lateral_convs.0.conv.weight"
    assert torch.equal(tr.model.state_dict()[key], official.state_dict()[key])

    ours = create_model("rtdetr_r34vd", num_classes=80, **TINY_MODEL)
    run = save_model(ours, tmp_path / "run" / "best.pth").parent  # a run folder stands for its best.pth
    cfg = load_recipe(None, [*unnamed, f"train.output_dir={tmp_path / 'b'}", f"init_from={run}"])
    assert cfg.model.name == "rtdetr_r34vd" and cfg.model.encoder.hidden_dim == 32
    assert cfg.model.decoder.num_queries == 10
    named = load_recipe(None, [*unnamed, "model.name=rtdetr_r18vd", f"init_from={run}"])
    assert named.model.name == "rtdetr_r18vd"  # a model named wins (and the file then does not fit it)


def test_failed_start_leaves_no_folder(tmp_path: Path, tiny_data: dict, capsys: pytest.CaptureFixture) -> None:
    from rtdetr.cli import main

    out = tmp_path / "never"
    assert main(["train", "--data", str(tmp_path / "missing.json"), "--output", str(out)]) == 1
    assert not out.exists()
    assert f"error: data.train: {tmp_path / 'missing.json'}: no such file or folder" in capsys.readouterr().err
    # a recipe's val path left in place by --data: the error says which setting holds it
    (tmp_path / "r.yaml").write_text("data:\n  train: coco/train.json\n  val: coco/val.json\n")
    assert main(["train", "-c", str(tmp_path / "r.yaml"), "--data", str(tiny_data["train"]), "-o", str(out)]) == 1
    assert "error: data.val: coco/val.json: no such file or folder" in capsys.readouterr().err and not out.exists()


def test_time_schedule_turns_augmentation_off_for_the_budget_tail(tiny_data: dict, tmp_path: Path) -> None:
    tr = Trainer(tiny_config(tiny_data, tmp_path / "t", "train.time_budget_s=100", "train.schedule_over=time",
                             "train.schedule=cosine", "train.no_aug_fraction=0.2", "data.mosaic=0.5"))  # fmt: skip
    tr.train_time_s = 79.0
    tr._seed_epoch(0)
    assert not tr.augment_off(0) and not tr.train_set.mix.stopped
    tr.train_time_s = 81.0
    tr._seed_epoch(1)
    assert tr.augment_off(1) and tr.train_set.mix.stopped and tr.train_set.transforms.stopped
    assert tr.collate.stopped
    by_epochs = Trainer(tiny_config(tiny_data, tmp_path / "e", "train.epochs=4", "train.no_aug_epochs=1"))
    assert [by_epochs.augment_off(e) for e in range(4)] == [False, False, False, True]
    share = Trainer(tiny_config(tiny_data, tmp_path / "f", "train.epochs=10", "train.no_aug_fraction=0.15"))
    assert share.stop_epoch == 8  # the last ceil(15% of 10) epochs


def test_mixing_augmentations_and_o2m_branch_train_and_the_curve_is_written(tiny_data: dict, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_data, tmp_path / "m", "train.epochs=1", "data.mosaic=1.0", "data.mixup=0.5",
                      "data.copy_paste=0.5", "train.cls_loss=mal", "train.eval_every_s=0.001",
                      "train.o2m_queries=16")  # fmt: skip
    tr = Trainer(cfg)
    images, targets = next(iter(tr.train_loader))
    assert images.shape[-2:] == (64, 64)
    per_image = [len(t["labels"]) for t in targets]
    plain = [len(r.labels) for r in tr.train_index.records]
    assert max(per_image) > max(plain)  # mosaic/mixup put more objects in an image than any single one has
    for t in targets:
        b = t["boxes"]
        assert ((b >= 0) & (b <= 1)).all() and (b[:, 2:] > 0).all()
    result = tr.fit()
    rows = list(csv.DictReader((Path(result["output_dir"]) / "curve.csv").open()))
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps) and len(rows) >= 3  # a point after every step (marks 1 ms apart) and at the end
    times = [float(r["train_time_s"]) for r in rows]
    assert times == sorted(times) and times[-1] == pytest.approx(tr.train_time_s, abs=0.1)
    final = result["last_eval"]["stats"]  # the last point is the run's final evaluation, at its last step
    assert (float(rows[-1]["AP"]), float(rows[-1]["AP50"])) == pytest.approx((final["AP"], final["AP50"]))
    assert steps[-1] == tr.global_step and len(set(steps)) == len(steps)
    metrics = list(csv.DictReader((Path(result["output_dir"]) / "metrics.csv").open()))
    assert "train_loss_mal" in metrics[0] and float(metrics[0]["train_loss_o2m"]) > 0  # the one-to-many branch ran


def test_a_time_budget_scales_the_warm_ups_to_the_steps_it_holds(
    tiny_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tr = Trainer(tiny_config(tiny_data, tmp_path / "w", "train.time_budget_s=100", "train.schedule_over=time",
                             "train.warmup_iters=1000", "train.ema_warmups=1000", "train.schedule=cosine",
                             "train.min_lr_ratio=0.0"))  # fmt: skip
    assert tr.expected_steps is None
    ema_warmups = tr.ema.warmups
    import math

    from rtdetr.engine.optim import expected_steps, lr_factor

    assert expected_steps(tr.cfg.train, 2, 2.0) is None  # from the third step on
    tr.expected_steps = expected_steps(tr.cfg.train, 10, 10.0)  # 1 s per step so far: the budget holds 100 steps
    assert tr.expected_steps == 100 and tr.ema.warmups == ema_warmups  # the EMA warm-up is not cut to the budget
    assert expected_steps(tr.cfg.train, 200, 100.0) == 200  # at least the steps done
    short = Trainer(tiny_config(tiny_data, tmp_path / "s", "train.time_budget_s=2", "train.schedule_over=time",
                                "train.epochs=100", "train.eval_interval=1000"))  # fmt: skip
    import itertools
    import time
    import types

    from rtdetr.engine import logger as runlog
    from rtdetr.engine import trainer as trainer_module

    ticks = itertools.count()  # the trainer's clock moves 0.02 s per reading: the same steps on a loaded machine
    clock = types.SimpleNamespace(time=lambda: 0.02 * next(ticks), strftime=time.strftime)
    monkeypatch.setattr(trainer_module, "time", clock)

    labels: list[str] = []
    monkeypatch.setattr(runlog, "progress_bar", lambda total, desc, *a: labels.append(desc))
    short.fit()  # the trainer estimates as it steps
    assert short.global_step >= 3 and short.expected_steps is not None and short.expected_steps >= short.global_step
    # the progress bar counts the epochs the budget holds once the pace is known, not the 100 configured
    epochs = -(-short.expected_steps // short.iters_per_epoch)
    assert len(labels) >= 2 and labels[0] == "epoch 1/100" and epochs < 100
    assert labels[-1] == f"epoch {len(labels)}/~{max(epochs, len(labels))} (time budget)"

    # step 4 of a 10-step warm-up (10% of 100), 10% into the cosine over the budget
    expect = 0.5 * 0.5 * (1 + math.cos(0.1 * math.pi))
    assert lr_factor(4, tr.cfg.train, tr.iters_per_epoch, 10.0, tr.expected_steps) == pytest.approx(expect)


def test_an_amp_step_hands_the_criterion_fp32(tiny_data: dict, tmp_path: Path) -> None:
    """bf16 autocast on the CPU: the model's outputs are bf16, the criterion still gets fp32 (to_float32)."""
    tr = Trainer(tiny_config(tiny_data, tmp_path / "amp", "train.amp=true", "train.amp_dtype=bf16",
                             "train.max_iters_per_epoch=1"))  # fmt: skip

    def dtypes(obj: object) -> set:
        if isinstance(obj, torch.Tensor):
            return {obj.dtype} if obj.is_floating_point() else set()
        values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else []
        return set().union(*(dtypes(v) for v in values))

    seen: dict[str, set] = {}
    model_forward, criterion_forward = tr.net.forward, tr.criterion.forward

    def model_spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = model_forward(*args, **kwargs)
        seen["model"] = dtypes(out["pred_logits"])
        return out

    def criterion_spy(outputs, targets):  # noqa: ANN001, ANN202
        seen["criterion"] = dtypes(outputs)
        return criterion_forward(outputs, targets)

    tr.net.forward, tr.criterion.forward = model_spy, criterion_spy
    tr._seed_epoch(0)
    tr.train_one_epoch(0)
    assert seen["model"] == {torch.bfloat16}  # autocast ran: without the cast the criterion would see bf16
    assert seen["criterion"] == {torch.float32}


def test_a_wide_input_trains_wide_at_every_scale(tiny_data: dict, tmp_path: Path) -> None:
    """data.image_size (h, w) = (96, 160) with multi-scale: every batch keeps the input wide (multi-scale used to
    resize each batch to a square of the long side's scale), and the checkpoint runs at 160x96 (8 images, batch 2:
    4 steps)."""
    tr = Trainer(tiny_config(tiny_data, tmp_path / "wide", "data.image_size=[96,160]", "data.multi_scale=true",
                             "train.epochs=1"))  # fmt: skip
    shapes: list[tuple[int, int]] = []
    forward = tr.net.forward

    def spy(x, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        shapes.append(tuple(x.shape[-2:]))
        return forward(x, *args, **kwargs)

    tr.net.forward = spy
    result = tr.fit()
    assert len(shapes) == 4 and len(set(shapes)) > 1 and all(h < w for h, w in shapes), shapes
    log = (Path(result["output_dir"]) / "log.txt").read_text()
    assert "rtdetr_r18vd at 160x96 (multi-scale 128x64 to 192x128): 4 optimizer steps" in log
    assert load_model(Path(result["output_dir"]) / "best.pth").config.eval_spatial_size == (96, 160)


@pytest.mark.parametrize("found_giou, found", [(-0.99, True), (0.99, False)])
def test_the_lr_cosine_waits_until_the_run_finds_its_objects(
    tiny_data: dict, tmp_path: Path, found_giou: float, found: bool
) -> None:
    """``anneal_from: found``: the LR holds its peak until the matched boxes' mean GIoU reaches ``found_giou``
    (read every ``log_interval`` steps), then the cosine spans the rest; never reached, it ends at the peak."""
    common = ("train.epochs=3", "train.eval_interval=3", "train.log_interval=2", "train.schedule=cosine",
              "train.min_lr_ratio=0.0", "train.warmup_iters=0", "train.ema=false")  # fmt: skip
    run = Trainer(tiny_config(tiny_data, tmp_path / "f", *common, "train.anneal_from=found",
                              f"train.found_giou={found_giou}"))  # fmt: skip
    run.fit()
    ckpt = read_checkpoint(run.out_dir / "last.pth")
    log_text = (run.out_dir / "log.txt").read_text()
    assert " left (2 epochs)" in log_text and " left (1 epoch)" in log_text  # each epoch line: the time to go
    assert "epoch 3: " in log_text and " left (" not in log_text.split("epoch 3: ")[1].splitlines()[0]
    final_lr = run.optimizer.param_groups[0]["lr"]
    if found:  # any boxes pass -0.99: the first read-back (step 2) starts the cosine, which ends at 0
        assert ckpt["anneal"]["found"][0] == 2 and "found the objects at step 2" in log_text
        assert final_lr == pytest.approx(0.0, abs=1e-9)
    else:  # the peak LR to the end, and the log says why
        assert ckpt["anneal"]["found"] is None and "stayed at its peak" in log_text
        assert final_lr == pytest.approx(1e-3)
    start = Trainer(tiny_config(tiny_data, tmp_path / "s", *common, "train.anneal_from=start"))
    start.fit()  # the cosine over the whole run from step 0: not the waiting run's LR in the middle of it
    lrs = {name: list(csv.DictReader((tr.out_dir / "metrics.csv").open())) for name, tr in (("f", run), ("s", start))}
    assert float(lrs["s"][0]["lr"]) < 1e-3 * 0.9 and float(lrs["f"][0]["lr"]) > float(lrs["s"][0]["lr"])


def test_resume_keeps_the_logs_and_refuses_a_finished_run(
    tiny_data: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Resuming used to rewrite metrics.csv with epochs as 1.0, 2.0, drop every curve.csv point of the first part,
    take an AP-vs-time point at once, and, on a run whose time budget was spent, log an empty epoch of NaN losses
    and evaluate the same weights again."""
    from rtdetr.convert.checkpoint import atomic_save

    out = tmp_path / "r"
    first = Trainer(tiny_config(tiny_data, out, "train.epochs=3", "train.eval_every_s=0.001"))
    first._seed_epoch(0)
    first.train_one_epoch(0)  # a curve point after every step (marks 1 ms apart)
    first.logger.epoch({"epoch": 1, "lr": 1e-3, "train_loss": 1.5})
    atomic_save(first.checkpoint(1), out / "last.pth")
    first.logger.close()
    before = list(csv.DictReader((out / "curve.csv").open()))
    assert len(before) == first.global_step
    every = first.train_time_s / 2.5
    resumed = Trainer(tiny_config(tiny_data, out, "train.epochs=2", f"resume={out / 'last.pth'}",
                                  f"train.eval_every_s={every}"))  # fmt: skip
    assert resumed.next_curve_s == pytest.approx(3 * every)  # the next mark after the time trained, not one at once
    resumed.fit()
    epochs = [r["epoch"] for r in csv.DictReader((out / "metrics.csv").open())]
    assert epochs == ["1", "2"]
    after = list(csv.DictReader((out / "curve.csv").open()))
    assert after[: len(before)] == before and len(after) > len(before)  # the first part's points kept
    assert all(int(r["step"]) > first.global_step for r in after[len(before) :])

    finished = Trainer(tiny_config(tiny_data, out, "train.epochs=2", f"resume={out / 'last.pth'}"))
    capsys.readouterr()
    result = finished.fit()
    assert "nothing to resume, it trained all 2 epochs" in capsys.readouterr().out and result["last_eval"] is None
    assert [r["epoch"] for r in csv.DictReader((out / "metrics.csv").open())] == ["1", "2"]  # no row added

    spent = tiny_config(tiny_data, out, "train.epochs=5", f"resume={out / 'last.pth'}", "train.time_budget_s=1e-3")
    Trainer(spent).fit()
    assert "nothing to resume, it used its time budget of 0 s (stopped after epoch 2)" in capsys.readouterr().out
    assert len(list(csv.DictReader((out / "metrics.csv").open()))) == 2


def test_warnings_while_reading_the_data_go_to_the_runs_log(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A warning raised while the run's data was read (coco128's data.yaml names a val folder that is not there)
    was printed bare, before the run's log began, and was missing from ``log.txt``: now it is in both, formatted
    as every other line. A failed start still prints what was held."""
    import logging

    from PIL import Image

    from rtdetr.engine.logger import held_log_records
    from rtdetr.recipe import load_recipe
    from tests.engine.conftest import TINY

    for i in range(4):
        Image.new("RGB", (64, 64), (40 * i, 90, 160)).save(tmp_path / f"{i}.jpg")
        (tmp_path / f"{i}.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: .\nval: images/val2017\nnames: [thing]\n")
    out = tmp_path / "run"
    Trainer(load_recipe(None, [*TINY, f"data.train={tmp_path / 'data.yaml'}", f"train.output_dir={out}"]))
    said = capsys.readouterr().out.splitlines()
    line = next(x for x in said if "names a 'val' split that cannot be read" in x)
    assert line.split()[1] == "WARNING" and line[2] == ":"  # "12:03:04 WARNING ...": as the run's other lines
    assert said.index(line) < [i for i, x in enumerate(said) if "run folder:" in x][0] + 2
    assert "names a 'val' split that cannot be read" in (out / "log.txt").read_text()

    with pytest.raises(ValueError), held_log_records() as held:
        logging.getLogger("rtdetr.data.detect").warning("said before the failure")
        raise ValueError("a bad file")
    assert len(held) == 1 and "said before the failure" in capsys.readouterr().out  # the run's handlers print it
