"""Training-step time of two source trees, interleaved: does a change make the steps faster, and where?

    git worktree add /tmp/base <rev>
    .venv/bin/python benchmarks/train_step_ab.py --base /tmp/base --rounds 5 --out results_train_step_ab_amx.json

Each setting is the step ``rtdetr.engine.budget.time_steps`` times before a budgeted run plans its epochs (forward
with denoising, fp32 criterion, backward, gradient clip, AdamW; random weights and data, data loading excluded):

* ``demo``: ``rtdetr demo``'s model and batch (R18-vd with a 128-wide encoder and decoder, 50 queries, batch 16,
  160 px, about 4 objects per image);
* ``r18_320``: ``rtdetr_r18vd`` at 320 px, batch 4 (BCCD's fast_small setting);
* ``r18_640``: ``rtdetr_r18vd`` at 640 px, batch 2;

each in fp32 and, where the CPU has native bf16, in bf16 autocast (``train.amp``'s default there). Every
measurement runs in its own process (``PYTHONPATH`` = the tree's ``src``), the trees alternating within each
round, so that drift in the machine's speed falls on both alike; the medians over the rounds are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from rtdetr.engine.hardware import cpu_info

#: setting name -> recipe overrides (model, size, batch); the demo's model comes from rtdetr.demo
SETTINGS: dict[str, list[str]] = {
    "demo": ["data.image_size=[160,160]", "model.num_classes=4"],
    "r18_320": ["model.name=rtdetr_r18vd", "data.image_size=[320,320]", "model.num_classes=3", "train.batch_size=4"],
    "r18_640": ["model.name=rtdetr_r18vd", "data.image_size=[640,640]", "model.num_classes=3", "train.batch_size=2"],
}

#: run in a fresh interpreter of the tree under test: prints the median step seconds
CHILD = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from rtdetr.demo import DEMO_RECIPE
from rtdetr.engine.budget import time_steps
from rtdetr.recipe import load_recipe
setting, rest = sys.argv[2], sys.argv[3:]
base = DEMO_RECIPE if setting == "demo" else ["data.multi_scale=false"]
cfg = load_recipe(None, [*base, "data.train=unused", *rest])
print(time_steps(cfg, steps=5, warmup=2)[0])
"""


def step_seconds(tree: Path, setting: str, amp: bool, threads: int) -> float:
    """Median seconds of one training step of ``setting`` with the code of ``tree`` (its ``src``)."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    args = [*SETTINGS[setting], f"train.amp={str(amp).lower()}"]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads), setting, *args], env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"{tree} {setting}: {out.stderr.strip().splitlines()[-1:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the source tree to compare with (a git worktree)")
    ap.add_argument("--new", type=Path, default=Path(__file__).resolve().parents[1], help="default: this checkout")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    cpu = cpu_info()
    precisions = [False, True] if cpu.native_bf16 else [False]
    times: dict[str, dict[str, list[float]]] = {}
    for r in range(args.rounds):
        for setting in args.settings:
            for amp in precisions:
                key = f"{setting} {'bf16' if amp else 'fp32'}"
                for name, tree in (("base", args.base), ("new", args.new)):
                    times.setdefault(key, {}).setdefault(name, []).append(
                        step_seconds(tree, setting, amp, args.threads)
                    )
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    results = {}
    for key, by_tree in times.items():
        base, new = statistics.median(by_tree["base"]), statistics.median(by_tree["new"])
        results[key] = {"base_s": round(base, 4), "new_s": round(new, 4), "new_over_base": round(new / base, 3),
                        "runs": {k: [round(v, 4) for v in vs] for k, vs in by_tree.items()}}  # fmt: skip
        print(f"{key:<14} base {base:.3f} s  new {new:.3f} s  ({new / base:.2f}x)")
    if args.out:
        report = {"cpu": cpu.as_dict(), "threads": args.threads, "rounds": args.rounds, "base": str(args.base),
                  "new": str(args.new), "results": results}  # fmt: skip
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
