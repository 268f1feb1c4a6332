"""Where one fp32 training step goes: convolutions, linear layers, batch norm and the rest, with the FLOPs of the
dense parts and the rate they run at (the README's training-step profile).

The step is the one ``official_cpu_speed.py`` times (forward with denoising, criterion, backward, gradient clip,
AdamW), on ``rtdetrv2_r18vd`` at --size, batch --batch, fp32, with ``torch.profiler`` self times (medians over
--runs steps after 2 warm-up steps) and FLOPs from ``torch.utils.flop_counter``::

    .venv/bin/python benchmarks/train_step_profile.py --threads 2 --out benchmarks/results_train_step_profile_zen3.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from official_cpu_speed import TARGETS  # noqa: E402
from rtdetr.engine.hardware import cpu_info  # noqa: E402
from rtdetr.loss import RTDETRCriterion  # noqa: E402
from rtdetr.loss.criterion import to_float32  # noqa: E402
from rtdetr.models import create_model  # noqa: E402

#: profiler op names per part of the step (self time); everything else is "rest"
PARTS = {
    "convolution": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution"),
    "linear": ("aten::mm", "aten::addmm", "aten::bmm"),
    "batch_norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
}
FLOP_PARTS = {"convolution": ("convolution", "convolution_backward"), "linear": ("mm", "addmm", "bmm")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="rtdetrv2_r18vd")
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=12, help="list the N slowest ops of the rest (self time)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.variant).train()
    x = torch.rand(args.batch, 3, args.size, args.size)
    targets = (TARGETS * args.batch)[: args.batch]
    criterion = RTDETRCriterion(model.config.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        losses = criterion(to_float32(model(x, targets)), targets)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()

    for _ in range(2):
        step()
    walls, parts = [], {k: [] for k in (*PARTS, "rest")}
    rest_ops: dict[str, list[float]] = {}
    for _ in range(args.runs):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            step()
            walls.append(time.perf_counter() - t0)
        totals = dict.fromkeys(parts, 0.0)
        for ev in prof.key_averages():
            part = next((k for k, names in PARTS.items() if ev.key in names), "rest")
            totals[part] += ev.self_cpu_time_total / 1e6
            if part == "rest":
                rest_ops.setdefault(ev.key, []).append(ev.self_cpu_time_total / 1e6)
        for k, v in totals.items():
            parts[k].append(v)
    with FlopCounterMode(display=False) as fc:
        step()
    flops = {str(k).split(".")[-1].split("(")[0]: v for k, v in fc.get_flop_counts()["Global"].items()}
    rows = {}
    for k, v in parts.items():
        sec = statistics.median(v)
        gflop = sum(flops.get(op, 0) for op in FLOP_PARTS.get(k, ())) / 1e9
        rate = round(gflop / sec, 1) if gflop else None
        rows[k] = {"s": round(sec, 3), "gflop": round(gflop, 1), "gflop_per_s": rate}
    total = sum(r["s"] for r in rows.values())
    print(f"{args.variant} {args.size}x{args.size} batch {args.batch}, fp32, {args.threads} threads; "
          f"step {statistics.median(walls):.2f} s wall (profiled), self times:")  # fmt: skip
    for k, r in rows.items():
        rate = f"{r['gflop']:7.1f} GFLOP {r['gflop_per_s']:6.1f} GFLOP/s" if r["gflop"] else ""
        print(f"  {k:<12} {r['s']:6.3f} s  {100 * r['s'] / total:4.1f}%  {rate}")
    # an op missing from a run counts 0 there
    rest_top = sorted(((op, statistics.median(v + [0.0] * (args.runs - len(v)))) for op, v in rest_ops.items()),
                      key=lambda kv: -kv[1])[: args.top]  # fmt: skip
    print("  the rest's slowest ops:")
    for op, sec in rest_top:
        print(f"    {op:<44} {sec:6.3f} s")
    if args.out:
        res = {
            "variant": args.variant, "size": args.size, "batch": args.batch, "threads": args.threads,
            "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_info().as_dict(),
            "date": time.strftime("%Y-%m-%d"), "step_wall_s": round(statistics.median(walls), 3), "parts": rows,
            "rest_top": {op: round(sec, 4) for op, sec in rest_top},
        }  # fmt: skip
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
