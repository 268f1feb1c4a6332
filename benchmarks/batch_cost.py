"""What a batch costs per image: PyTorch inference (``detect``, post-processing included) at batch 1 and 8 and the
training step at batch 2 and 4, r18vd at 640, in this checkout and, with ``--against``, another checkout's
``src`` (the code before a change), alternating the two in fresh processes so that a busy machine hits both alike.

    python benchmarks/batch_cost.py --against /tmp/old/src --rounds 2 --out benchmarks/results_batch_cost_amx.json

Inference is timed at ``precision=auto`` (bf16 autocast where the CPU has native bf16) and fp32, 5 runs after 2
warm-ups, median; the training step (forward, loss, backward, AdamW) in fp32 and bf16 autocast, 4 steps after
one, median. Each figure in the JSON is the median over the rounds, with every round's value beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from rtdetr.engine.hardware import cpu_info

MEASURE = r"""
import json, statistics, sys, time
import torch
from rtdetr import RTDETR
from rtdetr.loss import RTDETRCriterion
from rtdetr.loss.criterion import to_float32
from rtdetr.models import create_model

torch.set_num_threads(int(sys.argv[1]))
out = {}
for precision in ("auto", "fp32"):
    backend = RTDETR("rtdetr_r18vd", precision=precision).backend
    for n in (1, 8):
        x, sizes = torch.rand(n, 3, 640, 640), torch.tensor([[640, 480]] * n)
        with torch.no_grad():
            for _ in range(2):
                backend.detect(x, sizes)
            times = []
            for _ in range(5):
                t = time.perf_counter()
                backend.detect(x, sizes)
                times.append(time.perf_counter() - t)
        out[f"infer {precision} batch {n}, ms per image"] = 1000 * statistics.median(times) / n
for n in (2, 4):
    torch.manual_seed(0)
    model, criterion = create_model("rtdetr_r18vd", num_classes=80).train(), RTDETRCriterion(80)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 640, 640, generator=g)
    targets = [{"labels": torch.randint(0, 80, (6,), generator=g), "boxes": torch.rand(6, 4, generator=g) * 0.4 + 0.3}
               for _ in range(n)]
    for amp in (False, True):
        times = []
        for k in range(5):
            t = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16, enabled=amp):
                outputs = model(x, targets)
            sum(criterion(to_float32(outputs), targets).values()).backward()
            opt.step()
            opt.zero_grad()
            if k:
                times.append(time.perf_counter() - t)
        out[f"train batch {n} {'bf16' if amp else 'fp32'}, s per step"] = statistics.median(times)
print("RESULT " + json.dumps(out))
"""


def measure(src: Path, threads: int) -> dict[str, float]:
    """One fresh process running :data:`MEASURE` on the code in ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(threads)], env=env, capture_output=True, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise SystemExit(f"measuring {src} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(line[len("RESULT ") :]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", type=Path, help="another checkout's src folder to measure alternately")
    ap.add_argument("--rounds", type=int, default=2, help="measurements of each code (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--out", type=Path, help="write the results here as JSON")
    args = ap.parse_args(argv)
    here = Path(__file__).resolve().parents[1] / "src"
    codes = {"this": here, **({"against": args.against.resolve()} if args.against else {})}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
    for r in range(args.rounds):
        for name, src in codes.items():
            rounds[name].append(measure(src, args.threads))
            print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in rounds[name][-1].items()))
    report: dict[str, Any] = {
        "cpu": cpu_info().as_dict(),
        "threads": args.threads,
        "sources": {k: str(v) for k, v in codes.items()},
    }
    for name, values in rounds.items():
        report[name] = {k: {"median": statistics.median(v[k] for v in values), "rounds": [v[k] for v in values]}
                        for k in values[0]}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
