"""End-to-end latency of a detector split into pre-processing, model and post-processing, over batch sizes."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from rtdetr.bench.profile import measure_latency

__all__ = ["benchmark_detector"]


def _demo_image(size: tuple[int, int] = (1280, 720)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8))


@torch.inference_mode()
def benchmark_detector(
    det: Any,
    batch_sizes: Sequence[int] = (1,),
    warmup: int = 3,
    runs: int = 10,
    threads: int | None = None,
    image: Image.Image | None = None,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Time ``det`` (an :class:`rtdetr.api.RTDETR`, PyTorch or ONNX backend) on one image repeated per batch, at
    ``image_size`` ``(height, width)`` (default: the model's; an exported graph runs at its own size only and
    raises ValueError for another).

    Returns per batch size the median/p90 of ``preprocess`` (resize + to tensor), ``model`` (forward; an exported
    graph includes its post-processing), ``postprocess`` (top-k + scaling; unpacking for a graph) and
    ``end_to_end`` (all three), plus images per second. CUDA work is synchronised inside every timed call.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    img = image or _demo_image()
    pred = det.predictor(conf=0.0, image_size=image_size)
    backend = pred.detector
    sync = backend.synchronize  # GPU work is queued: time it, not its launch
    rows = []
    for bs in sorted(set(batch_sizes)):  # smallest first: a compiled model pads a batch to a larger compiled size
        images = [img] * bs
        x, sizes = pred.preprocess(images)
        pre = measure_latency(lambda: pred.preprocess(images), warmup, runs)  # noqa: B023
        model = measure_latency(lambda: backend.infer(x, sizes), warmup, runs, sync=sync)  # noqa: B023
        raw = backend.infer(x, sizes)
        post = measure_latency(lambda: backend.postprocess(raw, sizes), warmup, max(runs, 20), sync=sync)  # noqa: B023
        items = [(img, None, None, img.size)] * bs
        e2e = measure_latency(lambda: pred._run(items), warmup, runs, sync=sync)  # noqa: B023
        rows.append(
            {
                "batch": bs,
                "preprocess": {"median_ms": pre.median_ms, "p90_ms": pre.p90_ms},
                "model": {"median_ms": model.median_ms, "p90_ms": model.p90_ms},
                "postprocess": {"median_ms": post.median_ms, "p90_ms": post.p90_ms},
                "end_to_end": {"median_ms": e2e.median_ms, "p90_ms": e2e.p90_ms},
                "images_per_s": round(bs / (e2e.median_ms / 1000), 2),
            }
        )
    return {
        "backend": backend.kind,
        "precision": backend.precision,
        "channels_last": backend.channels_last,
        "model": det.info(),
        "image_size": pred.image_size,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "warmup": warmup,
        "runs": runs,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "results": rows,
    }
