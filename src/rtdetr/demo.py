"""``make demo``: the main job on the embedded default dataset; needs no data and no downloads.

1. generates a synthetic detection dataset on disk in COCO format (4 shape classes, varied sizes and backgrounds);
2. trains a small RT-DETR (R18-vd backbone, narrow encoder/decoder, 160x160 input) from scratch on the CPU,
   within ``--minutes`` (default 7.5): a few training steps are timed on this machine first, then the 10-epoch
   schedule runs until the training share of the budget is spent (all of it on a fast CPU);
3. evaluates the best (EMA) checkpoint with COCO metrics and writes predictions drawn on validation images.

Outputs go to ``outputs/demo``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

from rtdetr import cli_args as arg
from rtdetr.api import RTDETR
from rtdetr.config import RunConfig
from rtdetr.data import load_index
from rtdetr.data.synthetic import make_synthetic_coco
from rtdetr.engine.budget import plan_epochs, time_steps
from rtdetr.engine.distributed import resolve_device
from rtdetr.engine.hardware import cpu_info, training_amp
from rtdetr.engine.trainer import Trainer
from rtdetr.recipe import load_recipe

#: The demo model and schedule (all fields of a normal recipe; see rtdetr/configs/ for full-size ones).
DEMO_RECIPE = [
    "model.name=rtdetr_r18vd",
    "model.encoder.hidden_dim=128",
    "model.encoder.dim_feedforward=512",
    "model.decoder.feat_channels=[128,128,128]",
    "model.decoder.hidden_dim=128",
    "model.decoder.dim_feedforward=512",
    "model.decoder.num_queries=50",
    "model.decoder.num_denoising=50",
    "data.augment=false",
    "data.multi_scale=false",
    "data.workers=1",
    "train.batch_size=16",
    "train.lr=1e-3",
    "train.backbone_lr=1e-3",
    "train.schedule=cosine",
    "train.warmup_iters=50",
    "train.ema_decay=0.998",
    "train.ema_warmups=100",
    "train.no_aug_epochs=0",
    "train.recipe_defaults=official",
    "train.exist_ok=true",  # the demo always writes outputs/demo/run (a rerun replaces it)
]


#: seconds kept for what follows training: loading the best checkpoint, drawing predictions, the summary
_AFTER_TRAINING_S = 20.0


def _fit_budget(cfg: RunConfig, seconds: float, args: argparse.Namespace) -> RunConfig:
    """``cfg`` trained for what fits ``seconds`` here: a few steps are timed first; training then stops once its
    share of the budget is spent (mid-epoch if need be, followed by a last evaluation).

    The learning-rate schedule stays the full ``--max-epochs`` one. Measured on the demo (AVX2, 2 cores): stopped
    after 4 of 10 scheduled epochs it reaches AP 0.35, while a schedule squeezed into 3 epochs decays the rate
    before the model has found the objects and ends at AP 0.02."""
    step_s, infer_s = time_steps(cfg)  # (raises unless DEMO_RECIPE set the batch size)
    left = max(1.0, seconds - 2 * (step_s + infer_s) * 2 - _AFTER_TRAINING_S)  # minus the timing just done
    plan = plan_epochs(left, step_s, infer_s, args.train_images, args.val_images, cfg.train.batch_size or 1,
                       args.max_epochs, eval_overhead_s=3.0)  # fmt: skip
    eval_s = plan.epoch_s - plan.train_epoch_s  # one evaluation, with the overhead
    train_s = max(step_s, left - (plan.epochs + 1) * eval_s)  # the evaluations get their share
    full = args.max_epochs * plan.train_epoch_s
    fits = min(args.max_epochs, train_s / plan.train_epoch_s)
    finish = args.minutes if train_s < full else (full + args.max_epochs * plan.eval_s + _AFTER_TRAINING_S) / 60
    whole = (args.minutes * 60 - left + full + args.max_epochs * plan.eval_s) / 60  # the budget the schedule needs
    cpu = cpu_info()
    amp = training_amp(cfg.train.amp, cfg.train.amp_dtype, resolve_device(cfg.train.device))  # the trainer's choice
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[amp]
    print(
        f"[plan] {cpu.model} ({cpu.label}), {torch.get_num_threads()} threads, budget {args.minutes:g} min: "
        f"{step_s:.2f} s per training step ({precision}), {plan.eval_s:.0f} s per evaluation; about "
        f"{fits:.1f} epochs of the {args.max_epochs}-epoch schedule fit; expected finish in about {finish:.1f} min"
        + (
            f" (the whole schedule: about {whole:.0f} min here, --minutes {math.ceil(whole)})" if train_s < full else ""
        ),
        flush=True,
    )
    train = dataclasses.replace(cfg.train, epochs=args.max_epochs, time_budget_s=None if train_s >= full else train_s)
    return dataclasses.replace(cfg, train=train)


def build_parser(prog: str = "python -m rtdetr.demo") -> argparse.ArgumentParser:
    """The demo's options (``rtdetr demo`` and ``python -m rtdetr.demo``)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument(
        "-o", "--output", "--out", dest="out", default="outputs/demo", help="output folder (default outputs/demo)"
    )
    parser.add_argument("--minutes", type=arg.minutes, default=7.5, help="wall-clock budget for the whole demo")
    parser.add_argument(
        "--epochs", type=arg.positive_int, help="train exactly this many epochs (default: what fits the budget)"
    )
    parser.add_argument(
        "--max-epochs", type=arg.positive_int, default=10, help="epochs of the schedule a budgeted run follows"
    )
    parser.add_argument("--size", type=arg.side, default=160, help="image side, >= 32 (generated and trained)")
    parser.add_argument("--train-images", type=arg.positive_int, default=800, help="generated training images")
    parser.add_argument("--val-images", type=arg.positive_int, default=200, help="generated validation images")
    parser.add_argument("--threads", type=arg.positive_int, default=2, help="CPU threads")
    parser.add_argument("overrides", nargs="*", help="extra dotted overrides, e.g. train.epochs=2")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m rtdetr.demo") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ValueError, RuntimeError, OSError) as e:  # ConfigError, DataError...: one line, as the CLI says them
        print(f"{parser.prog}: error: {arg.error_text(e)}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.time()

    data = make_synthetic_coco(out / "data", args.train_images, args.val_images, args.size)
    print(
        f"[1/3] synthetic dataset in {out / 'data'}: {args.train_images} train / {args.val_images} val images "
        f"of {args.size}x{args.size}, 4 classes ({time.time() - t0:.0f} s)",
        flush=True,
    )

    cfg = load_recipe(
        None,
        [
            *DEMO_RECIPE,
            f"data.image_size=[{args.size},{args.size}]",
            f"data.train={data['train']}",
            f"data.val={data['val']}",
            f"train.epochs={args.epochs or args.max_epochs}",
            f"train.output_dir={out / 'run'}",
            *args.overrides,
        ],
    )
    if args.epochs is None:
        cfg = _fit_budget(cfg, args.minutes * 60 - (time.time() - t0), args)
    result = Trainer(cfg).fit()
    print(
        f"[2/3] trained {result['epochs_run']} epoch{'s' * (result['epochs_run'] != 1)} in {time.time() - t0:.0f} s; "
        f"checkpoints, metrics.csv and curves.png in {result['output_dir']}",
        flush=True,
    )

    best = Path(result["output_dir"]) / "best.pth"
    pred_dir = out / "predictions"
    val_images = [r.path for r in load_index(data["val"]).records[:8]]
    for r in RTDETR(best, device="cpu").predict(val_images, conf=0.5, max_det=50):
        r.save(pred_dir / f"{Path(r.path or 'image').stem}.png")
    stats = (result["last_eval"] or {}).get("stats", {})
    summary = {
        "best_AP": result["best_ap"],
        "best_epoch": result["best_epoch"],
        "epochs": result["epochs_run"],
        "last_AP": stats.get("AP"),
        "last_AP50": stats.get("AP50"),
        "seconds": round(time.time() - t0),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"[3/3] best COCO AP {result['best_ap']:.3f} (epoch {result['best_epoch']}), last AP50 "
        f"{stats.get('AP50', float('nan')):.3f}; predictions drawn in {pred_dir}; total {summary['seconds']} s"
    )
    if result["best_ap"] > 0.1:
        return 0
    print(
        f"the demo failed: best AP {result['best_ap']:.3f} is not above 0.1 after {result['epochs_run']} epochs "
        "(a longer --minutes or more --epochs lets it learn)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
