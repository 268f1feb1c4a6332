"""A/B of training recipes from scratch at an equal wall-clock training budget, with seeds.

    python benchmarks/recipe_ab.py bccd official --budget-min 30 --seeds 0 --eval-every 300 --out results_x.json
    python benchmarks/recipe_ab.py bccd fast_small --budget-min 15 --seeds 0 1 2 --eval-every 300 --out results_x.json
    python benchmarks/recipe_ab.py demo official --budget-min 5 --seeds 0 --out results_x.json
    python benchmarks/recipe_ab.py bccd_wide auto --size 320x192 --tag wide --budget-min 8 --out results_x.json

``bccd_wide`` is BCCD cropped to 16:9 (the middle 640x360 of each 640x480 image, a box kept where at least half of
it stays in; :func:`make_bccd_wide`), the shape of a video frame, to measure a wide input (``--size 320x192``)
against a square one (``--size 320``) on the same data.

``official`` is the recipe the project used before fast_small (BCCD: ``benchmarks/train_bccd.py``, batch 8, AdamW
4e-4 held constant after a 100-step warm-up; demo: the demo's own recipe, batch 16, a 10-epoch cosine);
``fast_small`` is fast_small as rounds 2 to 5 measured it, set explicitly on both datasets (batch 4, AdamW 4e-4, the
LR fitted to the budget; round 5 made 1e-3 its default, measured here as ``train.lr=1e-3 train.backbone_lr=1e-3``);
``auto`` is what ``rtdetr train`` gives a small dataset from scratch today (:mod:`rtdetr.defaults`, its batch and
LR chosen by the objects per image; the run records the batch and LR it got; bf16 autocast where the CPU has native
bf16, ``train.amp``'s default since round 10: ``train.amp=false`` for fp32), with the base recipe's warm-ups and EMA
(BCCD: LR warm-up 100 steps, EMA decay 0.999 over 200); ``cli`` is exactly what ``rtdetr train --model rtdetr_r18vd
--data ... --minutes N`` gives (every other setting at its default: ``train.epochs`` 72, the warm-ups and EMA of
``TrainConfig``; demo: its model settings kept). Each run evaluates every
``--eval-every`` seconds of training (AP-vs-time curve; evaluation time is not counted in the budget) and at the
end. Results merge into ``--out`` keyed by (dataset, recipe, budget, seed); CPU flags recorded, and a file of
another CPU's runs is refused (budgets in minutes compare only on one machine). Extra dotted overrides after the
recipe name (e.g. for ablations, with ``--tag`` to name them).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import torch

from rtdetr.defaults import FAST_SMALL
from rtdetr.engine.hardware import cpu_info
from rtdetr.engine.trainer import Trainer
from rtdetr.options import parse_size, size_text
from rtdetr.recipe import load_recipe
from train_bccd import BCCD_RECIPE  # benchmarks/, this script's folder


def _datasets_root() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return Path(os.environ.get("RTDETR_SHARED_DATASETS", str(default)))


def make_bccd_wide(root: Path, out: Path) -> dict[str, Path]:
    """BCCD's train and val splits cropped to their middle 640x360 rows, as COCO jsons under ``out``: a box is
    clipped to the crop and kept where at least half of its area stays in."""
    from PIL import Image

    from rtdetr.data import load_index

    files = {}
    for split in ("train", "val"):
        index = load_index(root, split)
        images, anns = [], []
        for rec in index.records:
            img = Image.open(rec.path).convert("RGB")
            w, h = img.size
            top = (h - w * 9 // 16) // 2
            crop = img.crop((0, top, w, h - top))
            name = f"{split}/{rec.path.stem}.jpg"
            (out / split).mkdir(parents=True, exist_ok=True)
            crop.save(out / name, quality=95)
            images.append({"id": len(images) + 1, "file_name": name, "width": crop.width, "height": crop.height})
            for box, label in zip(rec.boxes.tolist(), rec.labels.tolist()):
                x1, y1, x2, y2 = box[0], max(box[1] - top, 0.0), box[2], min(box[3] - top, float(crop.height))
                if y2 - y1 < 2 or (x2 - x1) * (y2 - y1) < 0.5 * (box[2] - box[0]) * (box[3] - box[1]):
                    continue
                bbox = [x1, y1, x2 - x1, y2 - y1]
                anns.append({"id": len(anns) + 1, "image_id": len(images), "category_id": int(label) + 1,
                             "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})  # fmt: skip
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(index.class_names)]
        files[split] = out / f"{split}.json"
        files[split].write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return files


def _data_overrides(dataset: str, size: int, work: Path) -> list[str]:
    if dataset == "bccd_wide":
        files = make_bccd_wide(_datasets_root() / "bccd", work / "bccd_wide")
        return [f"data.train={files['train']}", f"data.val={files['val']}"]
    if dataset == "bccd":
        root = _datasets_root() / "bccd"
        if not (root / "Annotations").is_dir():
            raise SystemExit(f"BCCD not found at {root} (set RTDETR_SHARED_DATASETS)")
        return [f"data.train={root}", "data.train_split=train", f"data.val={root}", "data.val_split=val"]
    from rtdetr.data.synthetic import make_synthetic_coco

    data = make_synthetic_coco(work / "demo_data", 800, 200, size)  # the demo's own data (same generator seed)
    return [f"data.train={data['train']}", f"data.val={data['val']}"]


#: fast_small as rounds 2 to 5 ran it (``rtdetr.defaults.FAST_SMALL`` until round 5 raised its LR to 1e-3): kept as
#: it was so that every round's ``fast_small`` rows reproduce.
FAST_SMALL_ROUNDS_2_TO_5 = {**FAST_SMALL, "train.lr": 4e-4, "train.backbone_lr": 4e-4}


def recipe(dataset: str, name: str) -> list[str]:
    """Dotted overrides of recipe ``name`` (``official``, ``fast_small`` or ``auto``) for ``dataset`` (``bccd`` or
    ``demo``)."""
    if dataset == "demo":
        from rtdetr.demo import DEMO_RECIPE

        base = [o for o in DEMO_RECIPE if not o.startswith("train.exist_ok")]
    else:
        base = list(BCCD_RECIPE)
    if name == "cli":  # `rtdetr train --model rtdetr_r18vd --data ... --minutes N`: nothing else set
        return [*(o for o in base if o.startswith("model.")), "train.recipe_defaults=auto"]
    if name == "auto":  # the base's batch, LR, schedule... dropped: the defaults choose them
        kept = [o for o in base if o.split("=")[0] not in FAST_SMALL and not o.startswith("train.recipe_defaults")]
        return [*kept, "train.recipe_defaults=auto"]
    if name == "fast_small":
        return [*base, "train.recipe_defaults=fast_small", *(f"{k}={v}" for k, v in FAST_SMALL_ROUNDS_2_TO_5.items())]
    return base


def _epochs(dataset: str, name: str) -> int:
    """The demo's own recipe follows a 10-epoch cosine that its time budget cuts short (as ``rtdetr.demo`` runs
    it); ``cli`` keeps ``train.epochs``' default (72), which sizes its warm-ups; every other run is ended by its
    budget alone."""
    return 10 if (dataset, name) == ("demo", "official") else 72 if name == "cli" else 1000


def run_one(args: argparse.Namespace, seed: int) -> dict:
    work = Path(args.work)
    h, w = args.size or ((160, 160) if args.dataset == "demo" else (320, 320))
    cfg = load_recipe(
        None,
        [
            *recipe(args.dataset, args.recipe),
            *_data_overrides(args.dataset, max(h, w), work),
            f"data.image_size=[{h},{w}]",
            "data.workers=1",
            f"train.epochs={_epochs(args.dataset, args.recipe)}",
            f"train.time_budget_s={args.budget_min * 60}",
            f"train.eval_every_s={args.eval_every}",
            "train.eval_interval=1000",
            f"train.seed={seed}",
            f"train.output_dir={work / f'{args.dataset}_{args.tag or args.recipe}_{args.budget_min:g}m_s{seed}'}",
            "train.exist_ok=true",
            "train.progress=false",
            *args.overrides,
        ],
    )
    t0 = time.time()
    trainer = Trainer(cfg)
    got = trainer.cfg.train  # after the defaults resolved
    result = trainer.fit()
    curve_path = Path(result["output_dir"]) / "curve.csv"
    with curve_path.open() as f:
        curve = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    stats = (result["last_eval"] or {}).get("stats", {})
    return {
        "dataset": args.dataset,
        "recipe": args.tag or args.recipe,
        "budget_min": args.budget_min,
        "seed": seed,
        "size": size_text((h, w)),
        "AP": stats.get("AP"),
        "AP50": stats.get("AP50"),
        "steps": int(curve[-1]["step"]) if curve else None,
        "epochs": result["epochs_run"],
        "batch_size": got.batch_size,
        "lr": got.lr,
        "backbone_lr": got.backbone_lr,
        "wall_min": round((time.time() - t0) / 60, 2),
        "curve": curve,
        "overrides": [*recipe(args.dataset, args.recipe), *args.overrides],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["bccd", "bccd_wide", "demo"])
    parser.add_argument("recipe", choices=["official", "fast_small", "auto", "cli"])
    parser.add_argument("overrides", nargs="*", help="extra dotted overrides (ablations)")
    parser.add_argument("--budget-min", type=float, required=True, help="training time per run (minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--size", type=parse_size, help="input size, a side or WIDTHxHEIGHT (default 320 for bccd, 160 for demo)"
    )
    parser.add_argument("--eval-every", type=float, default=150.0, help="seconds of training between evaluations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", help="name of the variant in the results (default: the recipe name)")
    parser.add_argument("--work", default="outputs/recipe_ab")
    parser.add_argument("--out", required=True, help="results JSON (one per machine; runs merge into it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    here = cpu_info().as_dict()
    if out.is_file() and (theirs := json.loads(out.read_text())["cpu"]) != here:  # before hours of training
        raise SystemExit(f"{out} holds runs measured on another CPU ({theirs.get('model')} family/model "
                         f"{theirs.get('family/model')}, this one: {here.get('family/model')}): an A/B compares runs "
                         "of one machine; give this machine's runs their own --out")  # fmt: skip
    for seed in args.seeds:
        row = run_one(args, seed)
        data = json.loads(out.read_text()) if out.is_file() else {"cpu": here, "runs": []}
        key = (row["dataset"], row["recipe"], row["budget_min"], row["seed"])
        data["runs"] = [r for r in data["runs"] if (r["dataset"], r["recipe"], r["budget_min"], r["seed"]) != key]
        data["runs"].append({**row, "cpu_class": here["class"], "threads": args.threads,
                             "torch": torch.__version__})  # fmt: skip
        out.write_text(json.dumps(data, indent=1))
        print(f"{key}: AP {row['AP']:.4f} AP50 {row['AP50']:.4f} ({row['steps']} steps, {row['wall_min']} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
