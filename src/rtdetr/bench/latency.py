"""End-to-end latency of a detector split into pre-processing, model and post-processing, over batch sizes."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

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
) -> dict[str, Any]:
    """Time ``det`` (an :class:`rtdetr.api.RTDETR`, PyTorch or ONNX backend) on one image repeated per batch.

    Returns per batch size the median/p90 of ``preprocess`` (resize + to tensor), ``model`` (forward; for ONNX the
    graph includes post-processing), ``postprocess`` (top-k + scaling; 0 for ONNX) and ``end_to_end`` (all three),
    plus images per second.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    img = image or _demo_image()
    pred = det.predictor(conf=0.0)
    rows = []
    for bs in batch_sizes:
        images = [img] * bs
        x, sizes = pred.preprocess(images)
        pre = measure_latency(lambda: pred.preprocess(images), warmup, runs)  # noqa: B023
        if det.onnx is not None:
            xs, ss = x.numpy(), sizes.numpy()
            model = measure_latency(lambda: det.onnx.run(xs, ss), warmup, runs)  # noqa: B023
            post_ms = {"median_ms": 0.0, "p90_ms": 0.0}
        else:
            xf = pred.fast.input(x)

            def forward(p: Any = pred, xf: Tensor = xf) -> Any:
                with p.fast.context():
                    return p.model(xf)

            model_t = measure_latency(forward, warmup, runs)
            out = {k: v.float() for k, v in forward().items()}
            post = measure_latency(lambda: pred.post(out, sizes), warmup, max(runs, 20))  # noqa: B023
            model, post_ms = model_t, {"median_ms": post.median_ms, "p90_ms": post.p90_ms}
        items = [(img, None, None)] * bs
        e2e = measure_latency(lambda: pred._run(items), warmup, runs)  # noqa: B023
        rows.append(
            {
                "batch": bs,
                "preprocess": {"median_ms": pre.median_ms, "p90_ms": pre.p90_ms},
                "model": {"median_ms": model.median_ms, "p90_ms": model.p90_ms},
                "postprocess": post_ms,
                "end_to_end": {"median_ms": e2e.median_ms, "p90_ms": e2e.p90_ms},
                "images_per_s": round(bs / (e2e.median_ms / 1000), 2),
            }
        )
    return {
        "backend": "pytorch" if det.onnx is None else type(det.onnx).__name__.replace("Detector", "").lower(),
        "precision": "fp32" if det.onnx is not None else det.precision,
        "channels_last": det.channels_last if det.onnx is None else False,
        "model": det.info(),
        "image_size": det.image_size,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "warmup": warmup,
        "runs": runs,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "results": rows,
    }
