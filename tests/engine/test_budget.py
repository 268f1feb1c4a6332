"""Fitting a run into a wall-clock budget: the arithmetic, the timing, and the demo that uses both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtdetr.engine.budget import plan_epochs, time_steps
from rtdetr.recipe import load_recipe


def test_plan_epochs_arithmetic() -> None:
    # 100 images / batch 10 = 10 steps of 1 s; 50 val images = 5 batches of 0.5 s; x1.05 overhead = 13.125 s/epoch
    plan = plan_epochs(100, 1.0, 0.5, 100, 50, 10, max_epochs=20)
    assert (plan.epochs, plan.eval_s, plan.epoch_s) == (7, 2.5, pytest.approx(13.125))
    assert plan.expected_s == pytest.approx(7 * 13.125) and plan.expected_s <= 100
    assert plan_epochs(10_000, 1.0, 0.5, 100, 50, 10, max_epochs=8).epochs == 8  # capped
    assert plan_epochs(5, 1.0, 0.5, 100, 50, 10, max_epochs=8, min_epochs=2).epochs == 2  # floor
    assert "7 epochs" in plan.describe() and "min" in plan.describe()
    with pytest.raises(ValueError):
        plan_epochs(0, 1.0, 0.5, 100, 50, 10, max_epochs=8)


def test_time_steps_measures_this_model() -> None:
    small = ["model.name=rtdetr_r18vd", "model.decoder.num_layers=1", "data.image_size=[64,64]", "train.device=cpu"]
    train_s, infer_s = time_steps(load_recipe(None, [*small, "train.batch_size=2"]), steps=1, warmup=1)
    assert 0 < infer_s < train_s  # backward + optimizer cost more than a forward pass
    big_s, _ = time_steps(load_recipe(None, [*small, "train.batch_size=8", "data.image_size=[128,128]"]), 1, 1)
    assert big_s > 2 * train_s  # 16x the pixels: the measurement follows the work


def test_demo_chooses_epochs_from_the_budget(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rtdetr.demo import main

    args = ["--out", str(tmp_path), "--size", "64", "--train-images", "8", "--val-images", "4", "--max-epochs", "2"]
    main([*args, "--minutes", "5", "train.batch_size=4", "train.progress=false"])
    out = capsys.readouterr().out
    assert "[plan]" in out and "about 2.0 epochs of the 2-epoch schedule fit" in out and "expected finish in" in out
    assert "the whole schedule" not in out  # it fits
    assert "s per training step (fp32)" in out  # the pinned AVX2 CPU: train.amp=auto trains in fp32 there
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs"] == 2  # a generous budget: the whole schedule
    # a budget that fits a fraction of the schedule stops training early, on time, and still evaluates
    tight = tmp_path / "tight"
    args[1] = str(tight)
    main([*args, "--minutes", "0.3", "--max-epochs", "50", "train.batch_size=4", "train.progress=false"])
    out = capsys.readouterr().out
    assert "epochs of the 50-epoch schedule fit" in out
    assert "(the whole schedule: about " in out and " min here, --minutes " in out  # what it would take
    summary = json.loads((tight / "summary.json").read_text())
    assert 1 <= summary["epochs"] < 50 and summary["best_AP"] is not None


def test_demo_arguments_are_checked_under_its_own_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``python -m rtdetr.demo`` named itself ``demo.py``; ``--threads 0``, ``--size 8`` and ``--train-images 0``
    were tracebacks (set_num_threads, ZeroDivisionError), ``--minutes nan`` and ``--epochs 0`` ran anyway, and a
    bad override was a ConfigError traceback."""
    from rtdetr.demo import main

    with pytest.raises(SystemExit):
        main(["--minutes", "soon"])
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m rtdetr.demo") and "python -m rtdetr.demo: error: argument --minutes" in err
    for flag, value, says in (("--threads", "0", "0 is too small; it must be >= 1"), ("--size", "8", ">= 32"),
                              ("--train-images", "0", ">= 1"), ("--minutes", "nan", "'nan' is not a finite number"),
                              ("--epochs", "0", ">= 1")):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            main([flag, value])
        assert e.value.code == 2 and f"error: argument {flag}: " in (err := capsys.readouterr().err) and says in err
    tiny = ["--out", str(tmp_path), "--size", "64", "--train-images", "2", "--val-images", "1", "--epochs", "1"]
    assert main([*tiny, "train.lr=-1"]) == 1
    err = capsys.readouterr().err
    assert err == "python -m rtdetr.demo: error: train: lr must be > 0 and backbone_lr >= 0\n"
