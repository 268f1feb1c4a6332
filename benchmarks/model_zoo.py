"""Params, GFLOPs and CPU latency of every registered variant.

Protocol (matches ../shared/reference/peer_cpu_baseline.md): ``torch.set_num_threads(2)``, batch 1, 640x640
``torch.rand`` input (seed 0), ``torch.inference_mode()``, warm-up runs, then timed runs; median and p90 in ms.
Latency is the model forward (eager) and, after ``deploy()`` fusion, the fused forward; post-processing is
timed separately.

    python benchmarks/model_zoo.py                       # all variants
    python benchmarks/model_zoo.py --variants 'rtdetr_r*' --runs 10 --json out.json
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import platform
import sys

import torch

from rtdetr.bench.profile import count_gflops, count_parameters, measure_latency
from rtdetr.engine.hardware import cpu_info
from rtdetr.models import PostProcessor, create_model, get_variant, list_models


def bench_variant(name: str, size: int, warmup: int, runs: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.rand(1, 3, size, size)
    row: dict = {
        "variant": name,
        "params_m": round(count_parameters(model) / 1e6, 2),
        "params_m_published": get_variant(name).params_m,
        "gflops": round(count_gflops(model, (size, size)), 1),
        "gflops_published": get_variant(name).gflops,
    }
    post = PostProcessor(num_classes=model.config.num_classes if model.config else 80)
    sizes = torch.tensor([[size, size]])
    with torch.inference_mode():
        row["eager"] = measure_latency(lambda: model(x), warmup, runs).as_dict()
        out = model(x)
        row["postprocess"] = measure_latency(lambda: post(out, sizes), warmup, max(runs, 20)).as_dict()
        model.deploy()
        row["deployed"] = measure_latency(lambda: model(x), warmup, runs).as_dict()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="*", help="shell pattern(s), comma separated")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    patterns = args.variants.split(",")
    names = [n for n in list_models() if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if not names:
        print(f"no variant matches {args.variants!r}", file=sys.stderr)
        return 2
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch 1, {args.size}x{args.size}, "
        f"median of {args.runs} runs after {args.warmup} warm-up ({platform.processor() or platform.machine()})"
    )
    header = f"{'variant':<22}{'params(M)':>10}{'GFLOPs':>8}{'eager ms':>10}{'p90':>7}{'deployed ms':>13}{'post ms':>9}"
    print(header + "\n" + "-" * len(header))
    rows = []
    for name in names:
        r = bench_variant(name, args.size, args.warmup, args.runs)
        rows.append(r)
        print(
            f"{name:<22}{r['params_m']:>10.2f}{r['gflops']:>8.1f}{r['eager']['median_ms']:>10.1f}"
            f"{r['eager']['p90_ms']:>7.0f}{r['deployed']['median_ms']:>13.1f}{r['postprocess']['median_ms']:>9.2f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "cpu": cpu_info().as_dict(),
                    "threads": args.threads,
                    "size": args.size,
                    "torch": torch.__version__,
                    "results": rows,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
