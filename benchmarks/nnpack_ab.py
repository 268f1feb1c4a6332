"""Winograd 3x3 convolutions through NNPACK against oneDNN, for the fused fp32 model on the CPU (not adopted).

    python benchmarks/nnpack_ab.py --reps 3 --out benchmarks/results_nnpack_ab_zen3.json

PyTorch's CPU build carries NNPACK, whose Winograd kernels do a 3x3 stride-1 convolution in fewer multiplications
than oneDNN's direct ones; PyTorch calls it only for batches of 16 or more, so here it is called directly
(``torch._nnpack_spatial_convolution``, after ``torch._nnpack_available()``, which initialises it). Each run is one
process: the fused model (``deploy()``) at 640x640, batch 1, 2 threads, the median of 15 forward passes, in one of
three modes: ``nchw`` (oneDNN), ``cl`` (oneDNN, channels_last: predict's fp32 default) and ``nnpack`` (NCHW, the 3x3
stride-1 convolutions that NNPACK ran at least 10% faster in isolation on their own input shapes sent to it). Every
mode runs under the default OpenMP wait policy and under ``OMP_WAIT_POLICY=PASSIVE`` (NNPACK's thread pool is not
OpenMP's: OpenMP threads spinning between parallel regions take the cores NNPACK's threads need), natively and
under ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` (on a CPU with AVX-512 only); the runs of a
repetition go one after another, modes interleaved. Results (median of the repetitions per setting, every run,
the per-convolution times of one run) go to ``--out`` with the CPU's flags.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("nchw", "cl", "nnpack")
SETTINGS = {  # name: environment added to the run's
    "default native": {},
    "PASSIVE native": {"OMP_WAIT_POLICY": "PASSIVE"},
    "default avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "PASSIVE avx2": {"OMP_WAIT_POLICY": "PASSIVE", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}


def _median_ms(fn, runs: int = 15, warmup: int = 2) -> float:  # type: ignore[no-untyped-def]
    from rtdetr.bench.profile import measure_latency

    return measure_latency(fn, warmup, runs).median_ms


def one_run(mode: str, variant: str, size: int) -> dict:
    """Time one mode in this process: ``{"ms": median forward, "convs": per-convolution times (nnpack mode)}``."""
    import torch
    import torch.nn.functional as F

    from rtdetr import create_model

    torch.set_num_threads(2)
    if not torch._nnpack_available():
        raise SystemExit("this torch build has no NNPACK")
    torch.manual_seed(0)
    model = create_model(variant, num_classes=80).deploy()
    x = torch.rand(1, 3, size, size)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)
             and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.groups == 1 and m.dilation == (1, 1)]  # fmt: skip
    table: list[dict] = []
    if mode == "nnpack":
        shapes: dict[torch.nn.Module, tuple[int, ...]] = {}
        hooks = [c.register_forward_hook(lambda m, i, o: shapes.__setitem__(m, tuple(i[0].shape))) for c in convs]
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        chosen = set()
        with torch.no_grad():
            for c in convs:
                xi, p = torch.randn(shapes[c]), c.padding[0]
                direct = _median_ms(lambda: F.conv2d(xi, c.weight, c.bias, 1, c.padding), 5, 1)  # noqa: B023
                wino = _median_ms(
                    lambda: torch._nnpack_spatial_convolution(xi, c.weight, c.bias, [p] * 4, [1, 1]),  # noqa: B023
                    5,
                    1,
                )
                table.append({"input": list(shapes[c]), "out": c.out_channels, "onednn_ms": round(direct, 2),
                              "nnpack_ms": round(wino, 2)})  # fmt: skip
                if wino < 0.9 * direct:
                    chosen.add(c)
        plain = torch.nn.Conv2d.forward

        def forward(self: torch.nn.Conv2d, inp: torch.Tensor) -> torch.Tensor:
            if self in chosen:
                p = int(self.padding[0])  # type: ignore[index]
                return torch._nnpack_spatial_convolution(inp.contiguous(), self.weight, self.bias, [p] * 4, [1, 1])
            return plain(self, inp)

        torch.nn.Conv2d.forward = forward  # type: ignore[method-assign]
    if mode == "cl":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ms = _median_ms(lambda: model(x))
    return {"ms": round(ms, 1), "convs_on_nnpack": sum(t["nnpack_ms"] < 0.9 * t["onednn_ms"] for t in table),
            "convs_3x3_s1": len(convs), "conv_table": table}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="rtdetr_r18vd")
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("results_nnpack_ab.json"))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode in this process, print JSON
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one, args.variant, args.size)))
        return
    from rtdetr.engine.hardware import cpu_info

    info = cpu_info()
    # the instruction-set cap only means something on a CPU above AVX2; on an AVX2 CPU "native" is that already
    settings = SETTINGS if "avx512f" in info.flags else {k: v for k, v in SETTINGS.items() if "native" in k}
    runs: list[dict] = []
    for rep in range(args.reps):
        for setting, extra in settings.items():
            for mode in MODES:
                cmd = [sys.executable, __file__, "--one", mode, "--variant", args.variant, "--size", str(args.size)]
                out = subprocess.run(cmd, env={**os.environ, **extra}, capture_output=True, text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                runs.append({"rep": rep, "setting": setting, "mode": mode, **res})
                print(f"rep {rep} {setting:15s} {mode:7s} {res['ms']:7.1f} ms", flush=True)
    summary = {
        s: {m: statistics.median(r["ms"] for r in runs if r["setting"] == s and r["mode"] == m) for m in MODES}
        for s in settings
    }
    for s, row in summary.items():
        print(f"{s:15s} " + "  ".join(f"{m} {v:6.1f}" for m, v in row.items()))
    tables = [r.pop("conv_table") for r in runs]
    record = {"variant": args.variant, "size": args.size, "batch": 1, "threads": 2, "cpu": info.as_dict(),
              "date": time.strftime("%Y-%m-%d"), "median_ms": summary, "runs": runs,
              "conv_table_default_native": next((t for t, r in zip(tables, runs) if t and r["setting"] ==
                                                 "default native"), [])}  # fmt: skip
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
