"""GPU speed, ours against the official RT-DETRv2 code on the same GPU and weights, and YOLOv8 with NMS.

Prepared for the lent GPU machine (torch + torchvision there; run by ``benchmarks/gpu_device.sh``, which says
what to carry). Every timing is synchronised (``torch.cuda.synchronize`` inside each timed call); median of
``--runs`` after ``--warmup``.

Per variant (default rtdetrv2_r18vd, rtdetrv2_r50vd, rtdetrv2_hgnetv2_l), at batch sizes ``--batches``:

* official: eager fp32 (model + its post-processor);
* ours: eager fp32, and each speed path: fused fp16 autocast, + CUDA graph, + channels_last, bf16 + CUDA graph;
  latency = time of one batch (model + post-processing, input already on the GPU), throughput = batch / latency;
  for the first variant also a batch sweep (``--sweep``) of the official eager and our fp16 CUDA-graph path;
* training step at ``--train-batch`` with AMP (fp16 autocast + GradScaler; forward, criterion, backward,
  clipping, AdamW), images/s, ours vs official;
* last, ``torch.compile`` of the first variant in each of ``--compile-modes`` while time is left (compiling takes
  a minute or more per input shape; its time is reported as ``compile_s``).

Pre-processing (resize + normalise on the CPU) is timed by ``rtdetr benchmark --device cuda``, which the device
script runs too. ``--deadline`` stops starting new pieces so that a run inside a lease ends with its JSON saved.

YOLOv8 s/m/l (Ultralytics, random init from its yaml: ``--yolo-dir`` holds yolov8s.yaml...) end to end with NMS
at conf 0.001 and 0.25, batch 1, through Ultralytics' own predict; random weights score almost nothing above
0.001, so each also runs with its class bias raised (``--yolo-shift``) to feed NMS a trained model's load.

Goals (issue 13): our best path >= 1.5x the official eager throughput at batch 1 and 32; our training step
<= 0.8x the official one. Results: ``--out`` JSON (and a table on stdout).

    PYTHONPATH=src python benchmarks/gpu_speed.py --official .peer/rtdetr_official --out $OUT/gpu_speed.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from official_parity import VARIANTS, official_code  # noqa: E402
from rtdetr.bench.profile import measure_latency  # noqa: E402
from rtdetr.convert import load_model  # noqa: E402
from rtdetr.engine.backend import TorchDetector  # noqa: E402
from rtdetr.engine.budget import _targets  # noqa: E402
from rtdetr.loss import RTDETRCriterion  # noqa: E402
from rtdetr.loss.criterion import to_float32  # noqa: E402
from rtdetr.models.postprocess import PostProcessor  # noqa: E402


def _timed(fn: Callable[[], Any], warmup: int, runs: int, device: torch.device) -> float:
    """Median milliseconds of ``fn`` with the device synchronised around every call."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return round(measure_latency(fn, warmup, runs, sync=sync).median_ms, 3)


def _train_images_per_s(model: torch.nn.Module, criterion: Any, batch: int, size: int, device: torch.device,
                        warmup: int, runs: int, channels_last: bool = False, fused: bool = False) -> float:  # fmt: skip
    """Images/s of an AMP training step; ``channels_last`` (model and input) and ``fused`` (AdamW's fused CUDA
    kernel instead of foreach) are the variants measured for ours."""
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, **({"fused": True} if fused else {"foreach": True}))
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    x = torch.rand(batch, 3, size, size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    targets = _targets(batch, 80, device, per_image=6)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            out = model(x, targets)
        losses = criterion({k: v for k, v in out.items()}, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1, foreach=True)
        scaler.step(opt)
        scaler.update()

    ms = _timed(step, warmup, runs, device)
    return round(batch / (ms / 1000), 2)


def _left(args: argparse.Namespace) -> float:
    """Seconds left before ``--deadline`` (counted from the start of the script)."""
    return float(args.deadline - (time.time() - args.t0))


def _time_paths(name: str, paths: dict[str, Callable[[torch.Tensor, torch.Tensor], Any]], batches: list[int],
                args: argparse.Namespace, device: torch.device, row: dict[str, Any]) -> None:  # fmt: skip
    """Time every path at every batch size into ``row``; a failing path is recorded and the others go on."""
    size = args.size
    with torch.inference_mode():
        for batch in batches:
            x = torch.rand(batch, 3, size, size, device=device)
            s = torch.tensor([[size, size]] * batch, device=device)
            for label, fn in paths.items():
                if _left(args) < args.reserve:
                    row.setdefault("errors", {})[f"{label} @ {batch}"] = "skipped: out of time"
                    continue
                t0 = time.time()
                try:
                    ms = _timed(lambda: fn(x, s), args.warmup, args.runs, device)  # noqa: B023
                except Exception as e:  # one failing path must not lose the others
                    row.setdefault("errors", {})[f"{label} @ {batch}"] = f"{type(e).__name__}: {e}"[:300]
                    print(f"{name:<20}{label:<52}b{batch:<4} {row['errors'][f'{label} @ {batch}']}", flush=True)
                    continue
                row["latency_ms"].setdefault(label, {})[str(batch)] = ms
                row["images_per_s"].setdefault(label, {})[str(batch)] = round(batch / (ms / 1000), 1)
                print(f"{name:<20}{label:<52}b{batch:<4}{ms:>9.2f} ms {batch / ms * 1000:>9.1f} img/s "
                      f"({time.time() - t0:.0f}s)", flush=True)  # fmt: skip


def bench_variant(name: str, args: argparse.Namespace, device: torch.device, keep: dict[str, Any]) -> dict[str, Any]:
    """Inference paths at ``--batches`` (and the sweep for the first variant), then the AMP training step."""
    folder, config = VARIANTS[name]
    row: dict[str, Any] = {"variant": name, "latency_ms": {}, "images_per_s": {}}
    with official_code(args.official.resolve() / folder) as off:
        backbone = "HGNetv2" if "hgnetv2" in name else "PResNet"
        cfg = off.YAMLConfig(config, **{backbone: {"pretrained": False}})
        official, post, criterion = cfg.model, cfg.postprocessor, cfg.criterion
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "official.pth"
            torch.save({"ema": {"module": official.state_dict(), "updates": 1}, "last_epoch": 71}, path)
            ours = load_model(path).eval()
            ours_train = load_model(path)
        if name == args.variants[0]:  # the compile phase, at the end, times the first variant
            keep[name] = ours
        official = official.to(device).eval()
        ours_post = PostProcessor(ours.config.num_classes)  # type: ignore[union-attr]
        paths: dict[str, Callable[[torch.Tensor, torch.Tensor], Any]] = {}
        paths["official eager fp32"] = lambda x, s: post(official(x), s)
        eager = copy.deepcopy(ours).to(device)
        paths["ours eager fp32"] = lambda x, s: ours_post(eager(x), s)
        for label, kw in (
            ("ours fused fp16", {"precision": "fp16"}),
            ("ours fused fp16 + CUDA graph", {"precision": "fp16", "cuda_graph": True}),
            ("ours fused fp16 + channels_last + CUDA graph",
             {"precision": "fp16", "cuda_graph": True, "channels_last": True}),
            ("ours fused bf16 + CUDA graph", {"precision": "bf16", "cuda_graph": True}),
        ):  # fmt: skip
            try:  # (fp16 and CUDA graphs refuse a CPU: a dry run on the CPU records why and goes on)
                det = TorchDetector(copy.deepcopy(ours), device, fuse=True, **kw)  # type: ignore[arg-type]
            except ValueError as e:
                row.setdefault("errors", {})[label] = str(e)
                continue
            paths[label] = det.detect
        _time_paths(name, paths, args.batches, args, device, row)
        if name == args.variants[0] and args.sweep:  # batch sweep 1-64: the official eager and our graph path
            sweep_paths = {
                k: v for k, v in paths.items() if k in ("official eager fp32", "ours fused fp16 + CUDA graph")
            }
            _time_paths(name, sweep_paths, [b for b in args.sweep if b not in args.batches], args, device, row)
        paths.clear()  # the inference copies go before the training step
        if args.skip_train:
            pass
        elif _left(args) < args.reserve + 30:
            row["train_images_per_s"] = "skipped: out of time"
        else:
            if hasattr(official, "multi_scale"):
                official.multi_scale = None
            tw, tr, tb = args.train_warmup, args.train_runs, args.train_batch
            ours_criterion = RTDETRCriterion(80)
            ours_loss = lambda o, t: ours_criterion(to_float32(o), t)  # noqa: E731
            row["train_images_per_s"] = {
                "official": _train_images_per_s(official, criterion, tb, args.size, device, tw, tr),
                "ours": _train_images_per_s(ours_train, ours_loss, tb, args.size, device, tw, tr),
            }
            # (in this order: channels_last converts the model in place)
            variants = {"ours fused AdamW": {"fused": True}, "ours channels_last": {"channels_last": True},
                        "ours channels_last + fused AdamW": {"channels_last": True, "fused": True}}  # fmt: skip
            for label, kw in variants.items():
                if _left(args) < args.reserve + 15:
                    break
                try:  # (the fused AdamW refuses nothing on CUDA; on a CPU dry run it may)
                    row["train_images_per_s"][label] = _train_images_per_s(
                        ours_train, ours_loss, tb, args.size, device, tw, tr, **kw
                    )
                except (RuntimeError, ValueError) as e:
                    row.setdefault("errors", {})[label] = str(e)[:300]
            print(f"{name:<20}train step b{tb} AMP: {row['train_images_per_s']}", flush=True)
    _summarise(row)
    return row


def _summarise(row: dict[str, Any]) -> None:
    """Best of our paths over the official eager throughput per batch; the training step's time ratio."""
    ips = row["images_per_s"]
    base = ips.get("official eager fp32", {})
    ours_paths = [k for k in ips if k.startswith("ours")]
    row["best_vs_official_eager"] = {
        b: round(max(ips[k].get(b, 0.0) for k in ours_paths) / base[b], 2) for b in base if base[b] > 0
    }
    t = row.get("train_images_per_s")
    if isinstance(t, dict):  # time ratio, ours as the trainer runs by default and our best variant: <= 0.8 is the goal
        row["train_step_vs_official"] = round(t["official"] / t["ours"], 3)
        row["train_step_best_vs_official"] = round(t["official"] / max(v for k, v in t.items() if k != "official"), 3)


def bench_compile(args: argparse.Namespace, device: torch.device, model: torch.nn.Module) -> dict[str, Any]:
    """``torch.compile`` modes on the first variant (fused fp16), while time is left: the mode is chosen by
    measurement. The first call per shape compiles; its wall time is reported as ``compile_s``."""
    row: dict[str, Any] = {"variant": args.variants[0], "latency_ms": {}, "images_per_s": {}, "compile_s": {}}
    for mode in args.compile_modes:
        if _left(args) < args.reserve + 120:
            row.setdefault("errors", {})[mode] = "skipped: out of time"
            continue
        label = f"ours fused fp16 + torch.compile({mode})"
        fp16 = "fp16" if device.type == "cuda" else "fp32"
        det = TorchDetector(copy.deepcopy(model), device, fuse=True, precision=fp16, compile=mode)  # type: ignore[arg-type]
        for batch in args.batches:
            x = torch.rand(batch, 3, args.size, args.size, device=device)
            s = torch.tensor([[args.size, args.size]] * batch, device=device)
            t0 = time.time()
            try:
                with torch.inference_mode():
                    det.detect(x, s)
                    det.synchronize()
            except Exception as e:
                row.setdefault("errors", {})[f"{mode} @ {batch}"] = f"{type(e).__name__}: {e}"[:300]
                print(f"compile {mode} b{batch}: {row['errors'][f'{mode} @ {batch}']}", flush=True)
                break
            row["compile_s"].setdefault(mode, {})[str(batch)] = round(time.time() - t0, 1)
            print(f"compile {mode} b{batch}: {time.time() - t0:.0f}s", flush=True)
        _time_paths(args.variants[0], {label: det.detect}, args.batches, args, device, row)
    return row


def bench_yolo(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """YOLOv8 s/m/l end to end with NMS at conf 0.001 and 0.25; with random weights few scores pass 0.001, so
    each model also runs with its class bias raised by ``--yolo-shift`` (more boxes into NMS; the count of
    anchors above each threshold is reported)."""
    from rtdetr.bench.latency import _demo_image
    from rtdetr.bench.yolo import benchmark_yolo

    rows = []
    for size in args.yolo:
        for shift in args.yolo_shift:
            if _left(args) < args.reserve:
                rows.append({"model": f"yolov8{size}", "score_shift": shift, "error": "skipped: out of time"})
                continue
            yaml = Path(args.yolo_dir) / f"yolov8{size}.yaml"
            try:
                rows.append(benchmark_yolo(yaml, _demo_image(), (0.001, 0.25), args.warmup, args.runs, None,
                                           args.size, "cuda:0" if device.type == "cuda" else "cpu",
                                           score_shift=shift))  # fmt: skip
                print(f"YOLOv8{size} shift {shift}: {json.dumps(rows[-1]['results'])}", flush=True)
            except Exception as e:
                rows.append({"model": str(yaml), "score_shift": shift, "error": f"{type(e).__name__}: {e}"[:300]})
                print(f"YOLOv8{size}: {rows[-1]['error']}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, default=Path("../shared/peers/rtdetr_official"))
    ap.add_argument("--variants", nargs="+", default=["rtdetrv2_r18vd", "rtdetrv2_r50vd", "rtdetrv2_hgnetv2_l"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--sweep", type=int, nargs="*", default=[2, 4, 8, 16, 64], help="more batch sizes, 1st variant")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--compile-modes", nargs="*", default=["reduce-overhead", "default"])
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--train-warmup", type=int, default=3)
    ap.add_argument("--train-runs", type=int, default=8)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--yolo", nargs="*", default=["s", "m", "l"], help="YOLOv8 sizes (needs ultralytics)")
    ap.add_argument("--yolo-dir", default=".peer/yolo", help="folder of yolov8{s,m,l}.yaml")
    ap.add_argument("--yolo-shift", type=float, nargs="+", default=[0.0, 4.0], help="class-bias raise (see yolo)")
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds: later pieces are skipped, not cut")
    ap.add_argument("--reserve", type=float, default=15, help="seconds kept at the end for the summary")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    args.t0 = time.time()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    meta: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "size": args.size,
        "runs": args.runs,
        "warmup": args.warmup,
        "synchronised": True,
        "train_batch": args.train_batch,
    }
    res: dict[str, Any] = {"meta": meta, "variants": [], "yolo": [], "compile": None}

    def save() -> None:  # after every piece: a run cut short keeps what it measured
        if args.out:
            args.out.write_text(json.dumps(res, indent=2) + "\n")

    keep: dict[str, Any] = {}
    for name in args.variants:
        try:
            res["variants"].append(bench_variant(name, args, device, keep))
        except Exception as e:
            res["variants"].append({"variant": name, "error": f"{type(e).__name__}: {e}"[:500]})
            print(f"{name}: {res['variants'][-1]['error']}", flush=True)
        save()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if args.yolo:
        res["yolo"] = bench_yolo(args, device)
        save()
    if args.compile_modes and args.variants[0] in keep:
        try:
            res["compile"] = bench_compile(args, device, keep[args.variants[0]])
        except Exception as e:
            res["compile"] = {"error": f"{type(e).__name__}: {e}"[:500]}
        save()
    meta["wall_s"] = round(time.time() - args.t0, 1)
    save()
    for row in res["variants"]:
        if "error" not in row:
            print(f"{row['variant']}: best path vs official eager {row['best_vs_official_eager']}, "
                  f"train step time ratio {row.get('train_step_vs_official')}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
