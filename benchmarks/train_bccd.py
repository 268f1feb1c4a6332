"""Real-data check: train rtdetr_r18vd from scratch on BCCD (Pascal VOC, 3 classes) for a fixed CPU time budget
and report validation mAP50 and mAP50:95.

    python benchmarks/train_bccd.py --budget-min 20 --size 320

No pretrained weights exist offline, so everything (backbone included) starts from random initialisation; the
figures measure how far the full pipeline gets in the budget, not the architecture's ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from rtdetr.engine.hardware import cpu_info
from rtdetr.engine.trainer import Trainer
from rtdetr.recipe import load_recipe

#: The BCCD benchmark setting (the recorded result is the official recipe's; benchmarks/recipe_ab.py compares it
#: with fast_small): from scratch, batch 8, AdamW 4e-4 everywhere, no photometric/crop augmentation, one scale.
BCCD_RECIPE = [
    "model.name=rtdetr_r18vd",
    "train.recipe_defaults=official",
    "data.augment=false",
    "data.multi_scale=false",
    "train.batch_size=8",
    "train.lr=4e-4",
    "train.backbone_lr=4e-4",
    "train.warmup_iters=100",
    "train.ema_decay=0.999",
    "train.ema_warmups=200",
    "train.no_aug_epochs=0",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get(
        "RTDETR_SHARED_DATASETS", str(Path(__file__).resolve().parents[2] / "shared" / "datasets")
    )
    parser.add_argument("--datasets", default=default_root, help="folder holding bccd/")
    parser.add_argument("--budget-min", type=float, default=20.0, help="training time budget in minutes")
    parser.add_argument("--size", type=int, default=320, help="square input size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="outputs/bench_bccd")
    parser.add_argument("overrides", nargs="*", help="extra dotted overrides")
    args = parser.parse_args(argv)
    root = Path(args.datasets) / "bccd"
    if not (root / "Annotations").is_dir():
        print(f"BCCD not found at {root} (set --datasets or RTDETR_SHARED_DATASETS)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = load_recipe(
        None,
        [
            *BCCD_RECIPE,
            f"data.train={root}",
            "data.train_split=train",
            f"data.val={root}",
            "data.val_split=val",
            f"data.image_size=[{args.size},{args.size}]",
            "data.workers=1",
            "train.epochs=1000",
            f"train.time_budget_s={args.budget_min * 60}",
            "train.eval_interval=5",
            f"train.output_dir={args.out}",
            "train.progress=false",
            *args.overrides,
        ],
    )
    t0 = time.time()
    result = Trainer(cfg).fit()
    stats = (result["last_eval"] or {}).get("stats", {})
    report = {
        "model": "rtdetr_r18vd (from scratch)",
        "input": args.size,
        "budget_min": args.budget_min,
        "wall_min": round((time.time() - t0) / 60, 1),
        "cpu": cpu_info().as_dict(),
        "threads": args.threads,
        "val_mAP50": stats.get("AP50"),
        "val_mAP50_95": stats.get("AP"),
        "best_mAP50_95": result["best_ap"],
        "best_epoch": result["best_epoch"],
        "torch": torch.__version__,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
