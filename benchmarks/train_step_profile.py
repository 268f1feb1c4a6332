"""Where one fp32 training step goes: convolutions, linear layers, batch norm and the rest, with the FLOPs of the
dense parts and the rate they run at (the README's training-step profile).

The step is the one ``official_cpu_speed.py`` times (forward with denoising, criterion, backward, gradient clip,
AdamW), on ``rtdetrv2_r18vd`` at --size, batch --batch, fp32, with ``torch.profiler`` self times (medians over
--runs steps after 2 warm-up steps) and FLOPs from ``torch.utils.flop_counter``::

    .venv/bin/python benchmarks/train_step_profile.py --threads 2 --out benchmarks/results_train_step_profile_zen3.json

With ``--official DIR`` (the official source; run in the peer environment of ``official_cpu_speed.py``, which has
torchvision) the official model's step is profiled the same way, on the same weights and targets, with its own
criterion, and the ops are compared one by one: where each implementation spends more than the other::

    PYTHONPATH=src /tmp/peer/bin/python benchmarks/train_step_profile.py --threads 2 \
        --official ../shared/peers/rtdetr_official --out benchmarks/results_train_step_vs_official_amx.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
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


def _profile_step(step: Callable[[], None], runs: int) -> tuple[list[float], dict[str, float]]:
    """Wall seconds of ``runs`` profiled calls of ``step`` (after 2 unprofiled) and each op's median self seconds
    (an op missing from a run counts 0 there)."""
    for _ in range(2):
        step()
    walls, ops = [], {}
    for i in range(runs):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            step()
            walls.append(time.perf_counter() - t0)
        for ev in prof.key_averages():
            ops.setdefault(ev.key, [0.0] * i).append(ev.self_cpu_time_total / 1e6)
        for v in ops.values():
            v += [0.0] * (i + 1 - len(v))
    return walls, {op: statistics.median(v) for op, v in ops.items()}


def _flops(step: Callable[[], None]) -> dict[str, int]:
    """FLOPs of one call of ``step`` per aten op (``mm``, ``convolution_backward``, ...)."""
    with FlopCounterMode(display=False) as fc:
        step()
    return {str(k).split(".")[-1].split("(")[0]: v for k, v in fc.get_flop_counts()["Global"].items()}


def _parts(ops: dict[str, float]) -> dict[str, float]:
    """Self seconds per part of the step (:data:`PARTS`, the rest)."""
    totals = dict.fromkeys((*PARTS, "rest"), 0.0)
    for op, sec in ops.items():
        totals[next((k for k, names in PARTS.items() if op in names), "rest")] += sec
    return totals


def _make_step(model: torch.nn.Module, criterion: Callable, x: torch.Tensor, targets: list[dict]) -> Callable[[], None]:
    """One fp32 optimizer step: forward with denoising, ``criterion``, backward, gradient clip at 0.1, AdamW."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        losses = criterion(to_float32(model(x, targets)), targets)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()

    return step


def _vs_official(args: argparse.Namespace, ours: dict[str, float], our_flops: dict[str, int], x: torch.Tensor,
                 targets: list[dict], state: dict[str, torch.Tensor]) -> dict:  # fmt: skip
    """Profile the official model's step (same weights ``state``, same input, its criterion) and compare ops."""
    from official_parity import VARIANTS, official_code

    folder, config = VARIANTS[args.variant]
    with official_code(args.official.resolve() / folder) as off:
        cfg = off.YAMLConfig(config, PResNet={"pretrained": False})
        model, criterion = cfg.model, cfg.criterion
        model.load_state_dict(state)
        model.train()
        if hasattr(model, "multi_scale"):
            model.multi_scale = None
        step = _make_step(model, criterion, x, targets)
        walls, theirs = _profile_step(step, args.runs)
        their_flops = _flops(step)
    diff = sorted(((op, ours.get(op, 0.0) - theirs.get(op, 0.0)) for op in {*ours, *theirs}), key=lambda kv: kv[1])
    pick = [*diff[: args.top], *diff[-args.top :][::-1]]
    print(f"official step {statistics.median(walls):.2f} s wall (profiled); parts (ours / official, s):")
    mine, their_parts = _parts(ours), _parts(theirs)
    for k in mine:
        print(f"  {k:<12} {mine[k]:6.3f} / {their_parts[k]:6.3f}")
    print("  ops where the two differ most (ours / official / ours - official, s):")
    for op, d in pick:
        print(f"    {op:<44} {ours.get(op, 0.0):6.3f} / {theirs.get(op, 0.0):6.3f} / {d:+6.3f}")
    print("  GFLOP per op (ours / official): " + ", ".join(
        f"{op} {our_flops.get(op, 0) / 1e9:.1f} / {their_flops.get(op, 0) / 1e9:.1f}"
        for op in sorted({*our_flops, *their_flops})))  # fmt: skip
    return {
        "gflop": {op: round(their_flops[op] / 1e9, 2) for op in sorted(their_flops)},
        "gflop_ours": {op: round(our_flops[op] / 1e9, 2) for op in sorted(our_flops)},
        "step_wall_s": round(statistics.median(walls), 3),
        "parts": {k: round(v, 3) for k, v in their_parts.items()},
        "ops_ours_minus_official": {op: round(d, 4) for op, d in pick},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="rtdetrv2_r18vd")
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=12, help="list the N slowest ops of the rest (self time)")
    ap.add_argument("--official", type=Path, help="also profile the official code's step (its source folder)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.variant).train()
    x = torch.rand(args.batch, 3, args.size, args.size)
    targets = (TARGETS * args.batch)[: args.batch]
    state = {k: v.clone() for k, v in model.state_dict().items()}  # the official model starts from these too
    step = _make_step(model, RTDETRCriterion(model.config.num_classes), x, targets)
    walls, ops = _profile_step(step, args.runs)
    flops = _flops(step)
    rows = {}
    for k, sec in _parts(ops).items():
        gflop = sum(flops.get(op, 0) for op in FLOP_PARTS.get(k, ())) / 1e9
        rate = round(gflop / sec, 1) if gflop else None
        rows[k] = {"s": round(sec, 3), "gflop": round(gflop, 1), "gflop_per_s": rate}
    total = sum(r["s"] for r in rows.values())
    print(f"{args.variant} {args.size}x{args.size} batch {args.batch}, fp32, {args.threads} threads; "
          f"step {statistics.median(walls):.2f} s wall (profiled), self times:")  # fmt: skip
    for k, r in rows.items():
        rate = f"{r['gflop']:7.1f} GFLOP {r['gflop_per_s']:6.1f} GFLOP/s" if r["gflop"] else ""
        print(f"  {k:<12} {r['s']:6.3f} s  {100 * r['s'] / total:4.1f}%  {rate}")
    rest = {op: sec for op, sec in ops.items() if not any(op in names for names in PARTS.values())}
    rest_top = sorted(rest.items(), key=lambda kv: -kv[1])[: args.top]
    print("  the rest's slowest ops:")
    for op, sec in rest_top:
        print(f"    {op:<44} {sec:6.3f} s")
    res = {
        "variant": args.variant, "size": args.size, "batch": args.batch, "threads": args.threads,
        "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_info().as_dict(),
        "date": time.strftime("%Y-%m-%d"), "step_wall_s": round(statistics.median(walls), 3), "parts": rows,
        "rest_top": {op: round(sec, 4) for op, sec in rest_top},
    }  # fmt: skip
    if args.official:
        res["official"] = _vs_official(args, ops, flops, x, targets, state)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
