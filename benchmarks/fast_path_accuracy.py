"""What each CPU fast path costs in accuracy, on real data: output deviation from the plain fp32 model and the
change of COCO AP.

Paths: the plain fp32 model (reference), the default predict path (fused + channels_last), bf16 autocast, the
same compiled (``compile="default"``, weights frozen; each new batch shape compiles first; in fp32 on a CPU
without native bf16), ONNX Runtime fp32 and int8, OpenVINO on the fp32 graph (its default precision) and on the
int8 graph; and the int8 graph with the decoder layers quantized too (``quantize_onnx_int8(decoder_fp32=False)``,
the default before 2026-12-06).
Deviation: every detection the reference reports at score >= --score-floor (what a user sees) is looked up
in the path's output (same class, IoU >= 0.5): the fraction found, the |score diff| and the largest coordinate
difference in pixels of the found pairs (mean / p95 / max), and the confident detections the path adds that
the reference does not have (spurious, per image). AP is COCO mAP@[.5:.95] on the same split.

    python benchmarks/fast_path_accuracy.py --checkpoint outputs/bench_bccd/best.pth \\
        --data ../shared/datasets/bccd --calib ../shared/datasets/bccd/JPEGImages \\
        --json benchmarks/results_fast_path_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtdetr.api import RTDETR
from rtdetr.data import load_index
from rtdetr.engine.evaluator import validate
from rtdetr.engine.hardware import cpu_info
from rtdetr.export import to_openvino
from rtdetr.ops.boxes import box_iou


def _detections(det: RTDETR, images: list[Path]) -> tuple[list, list, list]:
    labels, boxes, scores = [], [], []
    for r in det.predictor(conf=0.0, max_det=100).stream([str(p) for p in images]):
        labels.append(r.labels.numpy()[:100])  # an exported graph returns its own top-k (300): same K for all
        boxes.append(r.boxes.numpy()[:100])
        scores.append(r.scores.numpy()[:100])
    return labels, boxes, scores


def _deviation(ref: tuple[list, list, list], out: tuple[list, list, list], floor: float) -> dict[str, Any]:
    """Each reference detection with score >= ``floor`` is looked up in the other output among boxes of the same
    class (any score): IoU >= 0.5 counts as found (the closest in score when several overlap). Found pairs give
    |score diff| and the largest |coordinate diff| in pixels. Also counted: detections >= ``floor`` in the other
    output that overlap no confident reference detection (spurious)."""
    score_d: list[float] = []
    box_d: list[float] = []
    found = total = spurious = 0
    for rl, rb, rs, ol, ob, os_ in zip(*ref, *out):
        iou = box_iou(torch.from_numpy(rb), torch.from_numpy(ob))[0].numpy() * (rl[:, None] == ol[None])
        keep = rs >= floor
        total += int(keep.sum())
        for i in np.flatnonzero(keep):
            cands = np.flatnonzero(iou[i] >= 0.5)  # the same object in the other output: its best-scored box
            if len(cands):
                j = int(cands[np.abs(os_[cands] - rs[i]).argmin()])
                found += 1
                score_d.append(abs(float(rs[i] - os_[j])))
                box_d.append(float(np.abs(rb[i] - ob[j]).max()))
        confident = os_ >= floor
        if confident.any():
            spurious += (
                int((iou[keep][:, confident].max(0, initial=0.0) < 0.5).sum()) if keep.any() else int(confident.sum())
            )
    sd, bd = np.array(score_d or [0.0]), np.array(box_d or [0.0])
    return {
        "found": _r(found / max(total, 1)),
        "spurious_per_image": _r(spurious / len(ref[0])),
        "score_diff": {"mean": _r(sd.mean()), "p95": _r(np.percentile(sd, 95)), "max": _r(sd.max())},
        "box_diff_px": {"mean": _r(bd.mean()), "p95": _r(np.percentile(bd, 95)), "max": _r(bd.max())},
    }


def _r(x: Any) -> float:
    return round(float(x), 5)


def _ap(det: RTDETR, index: Any) -> dict[str, float]:
    res = validate(det.backend, index, det.image_size, 8, class_names=index.class_names)
    return {"AP": round(res["stats"]["AP"], 4), "AP50": round(res["stats"]["AP50"], 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a trained checkpoint (ours, official or HF)")
    ap.add_argument("--data", required=True, help="evaluation dataset (COCO json, YOLO yaml or VOC folder)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--calib", required=True, help="calibration images for int8 (a folder or dataset path)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--score-floor", type=float, default=0.3, help="ignore detections below this in both")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    index = load_index(args.data, args.split)
    images = [r.path for r in index.records]

    tmp = Path(tempfile.mkdtemp())
    # fp32 named, not left to precision="auto": that is bf16 where the CPU has native bf16, and the reference (and
    # the "fp32" row) would then have been bf16 on such a machine
    base = RTDETR(args.checkpoint, device="cpu", fuse=False, channels_last=False, precision="fp32")
    names = base.class_names
    rep = base.export("onnx", tmp / "m.onnx", int8=True, calibration=args.calib, check=False)
    compiled = "bf16" if cpu_info().native_bf16 else "fp32"
    paths: dict[str, RTDETR] = {
        "fp32 plain (reference)": base,
        "fused fp32 + channels_last": RTDETR(args.checkpoint, device="cpu", precision="fp32"),
        "fused bf16 + channels_last": RTDETR(args.checkpoint, device="cpu", precision="bf16"),
        # compiled in the precision a user compiles here: bf16 where the CPU has it natively, else fp32 (compiling
        # emulated bf16 took over 10 minutes on a Zen 3, for a path nobody would run there)
        f"compiled {compiled} + channels_last": RTDETR(
            args.checkpoint, device="cpu", precision=compiled, compile="default"
        ),
        "ONNX Runtime fp32": RTDETR(tmp / "m.onnx", threads=args.threads),
        "ONNX Runtime int8": RTDETR(Path(rep["int8_path"]), threads=args.threads),
    }
    # int8 as before 2026-12-06 (the decoder layers quantized too): what keeping them fp32 buys
    from rtdetr.api import _calibration_images
    from rtdetr.export import quantize_onnx_int8

    all8 = quantize_onnx_int8(tmp / "m.onnx", tmp / "m_all8.onnx", _calibration_images(args.calib),
                              base.image_size, decoder_fp32=False)  # fmt: skip
    paths["ONNX Runtime int8, decoder too"] = RTDETR(all8, threads=args.threads)
    try:
        paths["OpenVINO (default precision)"] = RTDETR(to_openvino(tmp / "m.onnx", tmp / "ov"), threads=args.threads)
        ov8 = to_openvino(Path(rep["int8_path"]), tmp / "ov8")
        paths["OpenVINO int8 graph"] = RTDETR(ov8, class_names=names, threads=args.threads)
        ov8all = to_openvino(all8, tmp / "ov8all")
        paths["OpenVINO int8 graph, decoder too"] = RTDETR(ov8all, class_names=names, threads=args.threads)
    except ImportError as e:
        print(f"OpenVINO skipped: {e}")

    auto = RTDETR(args.checkpoint, device="cpu")
    print(f"precision='auto' here: {auto.precision} ({auto.precision_reason})")
    ref = _detections(base, images)
    rows: dict[str, Any] = {}
    for name, det in paths.items():
        out = ref if det is base else _detections(det, images)
        row = _deviation(ref, out, args.score_floor)
        row.update(_ap(det, index))
        rows[name] = row
        print(f"{name:<38} {json.dumps(row)}", flush=True)
    ref_ap = rows["fp32 plain (reference)"]["AP"]
    for row in rows.values():
        row["AP_change_points"] = round((row["AP"] - ref_ap) * 100, 2)
    report = {
        "cpu": cpu_info().as_dict(),
        "auto_precision": auto.precision,  # what predict's default (fused + channels_last) runs here
        "auto_reason": auto.precision_reason,
        "checkpoint": args.checkpoint,
        "data": f"{args.data} ({args.split}, {len(images)} images)",
        "image_size": list(base.image_size),
        "score_floor": args.score_floor,
        "paths": rows,
        "numpy": np.__version__,
        "torch": torch.__version__,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
