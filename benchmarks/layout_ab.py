"""Does NHWC (``train.channels_last``) change what a run learns? Equal epochs, seeds, both layouts.

    python benchmarks/layout_ab.py demo --epochs 10 --seeds 0 1 2 --work /tmp/cl --out results_layout_ab_amx.json
    python benchmarks/layout_ab.py bccd --epochs 10 --seeds 0 1 2 --work /tmp/cl --out results_layout_ab_amx.json

The speed of each layout is measured apart (``train_step_profile.py``, the epoch times recorded here); this script
asks only whether a run learns the same in both layouts: every run trains a fixed number of epochs (no time
budget, so a busy machine changes the times and not the results) from the same seed, one run per (dataset,
layout, seed), each in its own process. ``demo`` is ``python -m rtdetr.demo --epochs N`` (its generated data,
160 px); ``bccd`` is ``rtdetr train`` on BCCD's train split with the defaults a small dataset gets (validated on
its val split). A run whose folder already holds its result is read, not run again. Results (best and last AP,
the AP after every epoch, seconds per epoch) merge into ``--out`` with the CPU's flags.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from rtdetr.engine.hardware import cpu_info


def _datasets_root() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return Path(os.environ.get("RTDETR_SHARED_DATASETS", str(default)))


def command(
    dataset: str, folder: Path, epochs: int, seed: int, nhwc: bool, size: int | None, extra: list[str]
) -> list[str]:
    """The command line of one run writing into ``folder`` (its ``metrics.csv`` under ``folder/run``)."""
    tail = [f"train.seed={seed}", f"train.channels_last={str(nhwc).lower()}", *extra]
    if dataset == "demo":
        return [sys.executable, "-m", "rtdetr.demo", "--out", str(folder), "--epochs", str(epochs),
                "--size", str(size or 160), *tail]  # fmt: skip
    root = _datasets_root() / "bccd"
    if not (root / "Annotations").is_dir():
        raise SystemExit(f"BCCD not found at {root} (set RTDETR_SHARED_DATASETS)")
    return [sys.executable, "-m", "rtdetr.cli", "train", "--data", str(root), "--epochs", str(epochs),
            "--size", str(size or 320), "-o", str(folder / "run"), "--threads", "2", "data.workers=1",
            "train.exist_ok=true", "train.progress=false", *tail]  # fmt: skip


def read_run(folder: Path) -> dict | None:
    """AP per epoch and seconds per epoch of a finished run in ``folder`` (None while it has not finished)."""
    metrics = folder / "run" / "metrics.csv"
    if not (folder / "run" / "best.pth").is_file() or not metrics.is_file():
        return None
    with metrics.open() as f:
        rows = list(csv.DictReader(f))
    aps = [float(r["AP"]) for r in rows if r.get("AP")]
    return {
        "ap_by_epoch": [round(a, 4) for a in aps],
        "best_AP": round(max(aps), 4),
        "last_AP": round(aps[-1], 4),
        "epoch_s_median": round(statistics.median(float(r["time_s"]) for r in rows), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["demo", "bccd"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, help="image side (default: 160 demo, 320 bccd)")
    parser.add_argument("--work", default="outputs/layout_ab")
    parser.add_argument("--out", required=True, help="results JSON (runs merge into it)")
    parser.add_argument("--tag", default="", help="name of the variant in the results (with extra overrides)")
    parser.add_argument("overrides", nargs="*", help="extra dotted overrides, e.g. train.amp=false")
    args = parser.parse_intermixed_args(argv)  # the overrides may follow the options
    out = Path(args.out)
    results: dict[str, Any] = (
        json.loads(out.read_text()) if out.is_file() else {"cpu": cpu_info().as_dict(), "runs": {}}
    )
    for seed in args.seeds:
        for nhwc in (False, True):
            key = f"{args.dataset}{args.tag}/{args.epochs}ep/{'nhwc' if nhwc else 'nchw'}/seed{seed}"
            folder = Path(args.work) / key.replace("/", "_")
            run = read_run(folder)
            if run is None:
                folder.mkdir(parents=True, exist_ok=True)
                with (folder / "output.log").open("w") as log:
                    cmd = command(args.dataset, folder, args.epochs, seed, nhwc, args.size, args.overrides)
                    subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True)
                run = read_run(folder)
            assert run is not None
            results["runs"][key] = run
            print(key, run["best_AP"], run["last_AP"], run["epoch_s_median"], flush=True)
            out.write_text(json.dumps(results, indent=1))
    name = f"{args.dataset}{args.tag}"
    for layout in ("nchw", "nhwc"):
        best = [r["best_AP"] for k, r in results["runs"].items() if k.startswith(f"{name}/{args.epochs}ep/{layout}/")]
        if best:
            print(f"{name} {layout}: best AP {statistics.mean(best):.4f} mean over {len(best)} seeds {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
