"""Optional peer timing: an Ultralytics YOLO model with its NMS, at the confidence thresholds that matter.

A YOLO detector's latency depends on its score threshold, because NMS runs over every box above it: at
``conf=0.001`` (what mAP evaluation uses) NMS sees thousands of candidates, at ``conf=0.25`` (a typical
deployment setting) only a few. RT-DETR has no NMS, so its post-processing time does not depend on the threshold.
This module times both settings through Ultralytics' own ``predict`` (its ``speed`` dictionary splits
pre-processing, inference and post-processing, which includes NMS).

Ultralytics (AGPL-3.0) is never a dependency of rtdetr: install it yourself to run the comparison.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from rtdetr.bench.profile import LatencyStats

__all__ = ["benchmark_yolo"]


def _stats(values: Sequence[float]) -> dict[str, float]:
    """median/p90 as :func:`rtdetr.bench.profile.measure_latency` reports them for our own stages."""
    st = LatencyStats.of(values)
    return {"median_ms": round(st.median_ms, 2), "p90_ms": round(st.p90_ms, 2)}


def benchmark_yolo(
    model: str | Path,
    image: Image.Image,
    confs: Sequence[float] = (0.001, 0.25),
    warmup: int = 3,
    runs: int = 10,
    threads: int | None = None,
    imgsz: int = 640,
    device: str = "cpu",
    score_shift: float = 0.0,
) -> dict[str, Any]:
    """Time ``ultralytics.YOLO(model).predict`` on ``image`` at each threshold in ``confs`` (batch 1, on
    ``device``; Ultralytics synchronises CUDA inside its stage timers).

    Args:
        model: a local ``.pt`` weights file or a model ``.yaml`` (random weights). Nothing is downloaded: a name
            that is not a local file is refused.
        score_shift: added to the bias of every class-score output of the detection head. A randomly
            initialised YOLO scores almost nothing above 0.001, so its NMS sees no work; a raised bias feeds NMS
            the thousands of candidates a trained model gives it at that threshold. The number of anchors whose
            best class score passes each threshold is reported as ``candidates``.

    Returns:
        ``{"model", "imgsz", "threads", "score_shift", "results": [{"conf", "preprocess", "inference",
        "postprocess_nms", "end_to_end", "detections", "candidates"}]}`` with median/p90 milliseconds per stage.
    """
    try:
        from ultralytics import YOLO
    except ImportError:
        raise ImportError(
            "the YOLO comparison needs the ultralytics package (pip install ultralytics; AGPL-3.0, not a "
            "dependency of rtdetr)"
        ) from None
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"{model}: no such YOLO weights or model yaml (rtdetr never downloads weights)")
    if threads is not None:
        torch.set_num_threads(threads)
    yolo = YOLO(str(path))
    if score_shift:
        _raise_class_bias(yolo.model, score_shift)
    frame = np.asarray(image.convert("RGB"))[:, :, ::-1].copy()  # Ultralytics takes numpy images as BGR
    best = _best_scores(yolo.model, frame, imgsz)
    rows = []
    for conf in confs:
        stages: dict[str, list[float]] = {"preprocess": [], "inference": [], "postprocess": [], "wall": []}
        count = 0
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            res = yolo.predict(frame, conf=conf, imgsz=imgsz, device=device, verbose=False)[0]
            wall = (time.perf_counter() - t0) * 1000
            if i < warmup:
                continue
            for k in ("preprocess", "inference", "postprocess"):
                stages[k].append(float(res.speed[k]))
            stages["wall"].append(wall)
            count = len(res.boxes)
        rows.append(
            {
                "conf": conf,
                "preprocess": _stats(stages["preprocess"]),
                "inference": _stats(stages["inference"]),
                "postprocess_nms": _stats(stages["postprocess"]),
                "end_to_end": _stats(stages["wall"]),
                "detections": count,
                "candidates": int((best > conf).sum()),
            }
        )
    return {
        "model": str(path),
        "imgsz": imgsz,
        "device": device,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "score_shift": score_shift,
        "results": rows,
    }


def _raise_class_bias(model: Any, shift: float) -> None:
    """Add ``shift`` to the last bias of each class branch (``cv3``) of the model's detection head."""
    head = model.model[-1]
    branches = getattr(head, "cv3", None)
    if branches is None:
        raise ValueError(f"score_shift: {type(head).__name__} has no class branches (cv3) to shift")
    with torch.no_grad():
        for branch in branches:
            last = [m for m in branch.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            assert last.bias is not None
            last.bias += shift


@torch.inference_mode()
def _best_scores(model: Any, frame: np.ndarray, imgsz: int) -> Tensor:
    """``[anchors]``: each anchor's best class score on ``frame`` resized to ``imgsz`` square (no letterbox: an
    approximation of the predict path's input); the anchors above a threshold are what YOLO's NMS starts from."""
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    x = torch.from_numpy(np.array(Image.fromarray(rgb).resize((imgsz, imgsz)))).permute(2, 0, 1)[None]
    net = copy.deepcopy(model).float().eval()  # (the predictor runs its own eval copy; this one stays untouched)
    out = net(x.to(next(net.parameters()).device).float() / 255)
    pred = out[0] if isinstance(out, (list, tuple)) else out  # [1, 4 + classes, anchors]
    return pred[0, 4:].amax(0)
