"""What phone-sized photos cost the data pipeline, with and without shrinking them when loaded
(``data.shrink_above``, default 2: an image larger than twice the network input on both sides is shrunk to that,
aspect kept, JPEGs decoded at a reduced DCT scale).

The set: training images of the shared BCCD set (or, where ``../shared/datasets`` is absent, the embedded demo
generator's), each upscaled to 4032x3024 (a 12-megapixel phone photo) and saved as JPEG quality 90, every third
one stored turned with EXIF orientation 6 as cameras do; YOLO labels (normalised, so they hold at any size).

Measured: per-sample time of the training pipeline (decode, photometric distort, zoom-out, IoU crop, flip,
resize) and of the validation one (decode, resize), one thread as in a DataLoader worker, median over the
images, each setting in its own process with its peak resident memory; and ``rtdetr train`` for a few steps
(batch 4 at ``--size``, default 640, 2 workers, augmentation on, wall time of the command, model building
included); and ``RTDETR.predict`` on each photo file, end to end (decode, resize, model at its automatic precision,
post-processing), with the photo decoded shrunk (predict's default since 2026-12-06, as training and ``val`` load
images) and at full resolution (``shrink_above=0``, also what ``predict(..., output=...)`` does, since drawings are
made on the full image), interleaved, medians over the images of 3 passes.

    python benchmarks/large_image_loading.py --images 16 --json benchmarks/results_large_image_loading_zen3.json
    python benchmarks/large_image_loading.py --images 16 --size 320 --steps 8 \\
        --json benchmarks/results_large_image_loading_zen3_320.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

SHARED = Path(os.environ.get("RTDETR_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def build_phone_set(root: Path, count: int) -> Path:
    """``count`` 4032x3024 JPEGs with YOLO labels under ``root``; returns its data.yaml."""
    from rtdetr.data import load_index

    bccd = SHARED / "bccd"
    if bccd.is_dir():
        index = load_index(str(bccd), split="train")
    else:
        from rtdetr.data.synthetic import make_synthetic_coco

        index = load_index(str(make_synthetic_coco(root / "synthetic", num_train=count, num_val=1)["train"]))
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for k, rec in enumerate(index.records[:count]):
        im = Image.open(rec.path).convert("RGB")
        w, h = im.size
        lines = [
            f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            for (x1, y1, x2, y2), c in zip(rec.boxes.tolist(), rec.labels.tolist())
        ]
        big = im.resize((4032, 3024), Image.Resampling.BICUBIC)
        out = root / "images" / "train" / f"{k:04d}.jpg"
        if k % 3 == 1:
            stored = big.transpose(Image.Transpose.ROTATE_90)
            exif = stored.getexif()
            exif[0x0112] = 6
            stored.save(out, quality=90, exif=exif)
        else:
            big.save(out, quality=90)
        (root / "labels" / "train" / f"{k:04d}.txt").write_text("\n".join(lines) + "\n")
    names = ", ".join(repr(n) for n in index.class_names)
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames: [{names}]\n")
    return root / "data.yaml"


def per_sample(data: str, pipeline: str, shrink_above: float, side: int) -> dict[str, Any]:
    """Per-sample milliseconds and peak memory of one pipeline (run in a fresh process by :func:`main`)."""
    import resource

    import torch

    from rtdetr.data import DetectionDataset, load_cover, load_index
    from rtdetr.data.transforms import build_train_transforms, build_val_transforms

    torch.set_num_threads(1)
    random.seed(0)
    torch.manual_seed(0)
    size = (side, side)
    tf = build_train_transforms(size) if pipeline == "train" else build_val_transforms(size)
    ds = DetectionDataset(load_index(data), tf, load_cover=load_cover(size, shrink_above))
    times = []
    for i in range(len(ds)):
        t0 = time.perf_counter()
        ds[i]
        times.append((time.perf_counter() - t0) * 1000)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"median_ms": statistics.median(times), "mean_ms": statistics.mean(times), "peak_rss_mb": rss}


def train_steps(data: str, shrink_above: float, steps: int, side: int, out: Path) -> float:
    """Wall seconds of ``rtdetr train`` for ``steps`` steps of batch 4 at ``side`` (2 workers, no validation)."""
    # no_aug_* 0: a one-epoch run keeps its augmentation (else its only epoch is the no-augmentation tail)
    cmd = [sys.executable, "-m", "rtdetr.cli", "train", "--data", data, "--epochs", "1", "--batch", "4",
           "--size", str(side), "-o", str(out), f"data.shrink_above={shrink_above}", "data.auto_val=false",
           "data.workers=2", f"train.max_iters_per_epoch={steps}", "train.progress=false",
           "train.no_aug_epochs=0", "train.no_aug_fraction=0"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def predict_photos(data: str, side: int, passes: int = 3) -> dict[str, Any]:
    """Median ms per photo of ``RTDETR.predict`` (r18vd, random weights, ``precision="auto"``, 2 threads) with
    the file decoded shrunk (``shrink_above=2``) and at full resolution (0), interleaved photo by photo."""
    import torch

    from rtdetr import RTDETR
    from rtdetr.data import load_index

    torch.set_num_threads(2)
    det = RTDETR("rtdetr_r18vd", eval_spatial_size=[side, side])
    paths = [r.path for r in load_index(data).records]
    preds = {s: det.predictor(conf=0.5, shrink_above=s) for s in (2.0, 0.0)}
    for pred in preds.values():
        pred(paths[0])  # warm-up
    times: dict[float, list[float]] = {s: [] for s in preds}
    for _ in range(passes):
        for path in paths:
            for s, pred in preds.items():
                t0 = time.perf_counter()
                pred(path)
                times[s].append((time.perf_counter() - t0) * 1000)
    return {f"predict shrink_above={s:g}": {"median_ms": statistics.median(v), "precision": det.precision}
            for s, v in times.items()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=640, help="network input side")
    ap.add_argument("--predict-only", action="store_true", help="time RTDETR.predict on the photos only")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--one", nargs=4, metavar=("DATA", "PIPELINE", "SHRINK", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(per_sample(args.one[0], args.one[1], float(args.one[2]), int(args.one[3]))))
        return

    from rtdetr.engine.hardware import cpu_info

    with tempfile.TemporaryDirectory() as tmp:
        data = str(build_phone_set(Path(tmp) / "phone", args.images))
        rows: dict[str, Any] = predict_photos(data, args.size)
        for k, v in rows.items():
            print(f"{k}: {v['median_ms']:.1f} ms per photo ({v['precision']})")
        for pipeline in ("train", "val") if not args.predict_only else ():
            for shrink in (0.0, 2.0):
                out = subprocess.run([sys.executable, __file__, "--one", data, pipeline, str(shrink), str(args.size)],
                                     check=True, capture_output=True, text=True).stdout  # fmt: skip
                rows[f"{pipeline} shrink_above={shrink:g}"] = json.loads(out.strip().splitlines()[-1])
                print(f"{pipeline:5s} shrink_above={shrink:g}: {rows[f'{pipeline} shrink_above={shrink:g}']}")
        for shrink in (0.0, 2.0) if not args.predict_only else ():
            s = train_steps(data, shrink, args.steps, args.size, Path(tmp) / f"run{shrink:g}")
            rows[f"rtdetr train {args.steps} steps shrink_above={shrink:g}"] = {"wall_s": s}
            print(f"rtdetr train, {args.steps} steps of batch 4 at {args.size}, shrink_above={shrink:g}: {s:.1f} s")
    result = {
        "what": "per-sample data pipeline cost of 4032x3024 JPEGs for a square input, rtdetr train wall time, and "
        "RTDETR.predict per photo",
        "input_side": args.size,
        "train_steps": args.steps,
        "source_images": "shared BCCD train" if (SHARED / "bccd").is_dir() else "embedded synthetic generator",
        "images": args.images,
        "cpu": cpu_info().as_dict(),
        "date": time.strftime("%Y-%m-%d"),
        "results": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
