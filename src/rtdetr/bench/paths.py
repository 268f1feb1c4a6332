"""Every CPU inference path this machine offers, timed on one model (``rtdetr benchmark --all-paths``).

Paths: PyTorch eager fp32; fused (Conv+BN folded, RepVGG merged) fp32 + channels_last; fused bf16 autocast +
channels_last (fewer runs where bf16 is emulated: it is several times slower there); the fused model compiled
(``torch.compile``, weights frozen) in the precision ``"auto"`` picks; the ONNX export on ONNX
Runtime in fp32 and int8 (static QDQ, calibrated); the same two graphs on OpenVINO. Each row is the end-to-end
time of one image (pre-processing, network, post-processing) at batch 1, and the network alone.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rtdetr.bench.latency import benchmark_detector
from rtdetr.engine.hardware import choose_precision, cpu_info
from rtdetr.options import size_text

__all__ = ["benchmark_paths", "format_paths"]


def _generated_calibration(folder: Path, n: int = 16) -> Path:
    """``n`` generated images (smooth blobs on noise) for int8 calibration when the user gives none."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(n):
        img = rng.random((480, 640, 3)) * 64
        for _ in range(6):
            cy, cx, r = rng.integers(40, 440), rng.integers(40, 600), rng.integers(20, 120)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"calib_{i:02d}.jpg")
    return folder


def _raise(error: Exception) -> Any:
    raise error


def benchmark_paths(
    model: str | Path,
    threads: int | None = None,
    warmup: int = 3,
    runs: int = 10,
    calibration: str | Path | None = None,
    image: Image.Image | None = None,
    work_dir: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
    skip: Sequence[str] = (),
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Time each available CPU path of ``model`` (variant name or PyTorch checkpoint) at batch 1.

    Args:
        calibration: images for the int8 graphs (folder or dataset path); default: generated images, which
            time the int8 graph correctly but say nothing about its accuracy.
        work_dir: where the exported graphs go (default: a temporary folder).
        image_size: ``(height, width)`` every path runs at, the graphs exported at it (default: the model's).
        skip: path groups to leave out: ``"bf16"``, ``"compile"``, ``"onnxruntime"``, ``"openvino"``, ``"int8"``.
        log: called with each finished row (progress).

    Returns:
        ``{"cpu": {...flags...}, "threads", "runs", "auto": {...}, "rows": [{"path", "how", "end_to_end_ms",
        "end_to_end_p90_ms", "model_ms", "vs_eager", "note"}...], "fastest": name}``.
    """
    import torch

    from rtdetr.api import RTDETR

    if threads is not None:
        torch.set_num_threads(threads)
    info = cpu_info()
    rows: list[dict[str, Any]] = []

    def add(name: str, make: Callable[[], Any], how: str, note: str = "", n: int = runs, w: int = warmup) -> None:
        """Time the detector ``make()`` returns as row ``name``; a path that cannot load or run here becomes a row
        saying why, and the others are still timed."""
        try:
            r = benchmark_detector(make(), (1,), w, n, threads, image, size)["results"][0]
        except (RuntimeError, ValueError, OSError) as e:
            if not rows:  # the eager baseline itself: nothing to compare against
                raise
            rows.append({"path": name, "how": how, "end_to_end_ms": None, "end_to_end_p90_ms": None,
                         "model_ms": None, "runs": 0, "note": f"failed here: {e}"})  # fmt: skip
            log(f"{name}: failed here ({e})")
            return
        rows.append(
            {
                "path": name,
                "how": how,
                "end_to_end_ms": round(r["end_to_end"]["median_ms"], 1),
                "end_to_end_p90_ms": round(r["end_to_end"]["p90_ms"], 1),
                "model_ms": round(r["model"]["median_ms"], 1),
                "runs": n,
                "note": note,
            }
        )
        log(f"{name}: {rows[-1]['end_to_end_ms']} ms")

    eager = RTDETR(model, device="cpu", precision="fp32", fuse=False, channels_last=False)
    size = image_size or eager.image_size
    add("pytorch eager fp32", lambda: eager, 'precision="fp32", fuse=False, channels_last=False')
    add("pytorch fused fp32 + channels_last", lambda: RTDETR(model, device="cpu", precision="fp32"), 'precision="fp32"')
    if "bf16" not in skip and info.aten_capped:
        log(f"pytorch bf16: left out, it fails under {info.capped} on this CPU")
    elif "bf16" not in skip:

        def bf16() -> Any:
            return RTDETR(model, device="cpu", precision="bf16")

        if info.native_bf16:
            add("pytorch fused bf16 + channels_last", bf16, 'precision="bf16"')
        else:  # emulated: a few runs are enough to show it
            add("pytorch fused bf16 + channels_last", bf16, 'precision="bf16"', "emulated (no native bf16)", 3, 1)
    if "compile" not in skip:  # in the precision auto picks; its warm-up (at least one call) compiles
        auto = choose_precision("auto", "cpu")[0]
        add(f"pytorch compiled {auto} + channels_last", lambda: RTDETR(model, device="cpu", precision=auto,
            compile="default"), f'precision="{auto}", compile="default"', "compiled in the warm-up (about 30 s)",
            runs, max(1, warmup))  # fmt: skip
    graphs = [g for g in ("onnxruntime", "openvino") if g not in skip]
    if graphs:
        tmp = tempfile.TemporaryDirectory() if work_dir is None else None
        root = Path(tmp.name if tmp else work_dir)  # type: ignore[arg-type]
        root.mkdir(parents=True, exist_ok=True)
        int8 = "int8" not in skip
        note8 = "" if calibration else "calibrated on generated images (speed only)"
        calib = calibration or (_generated_calibration(root / "calib") if int8 else None)
        fmt = "openvino" if "openvino" in graphs else "onnx"
        rep = eager.export(fmt, root / "model.onnx", size, check=False, int8=int8, calibration=calib)
        if "onnxruntime" in graphs:
            add("onnxruntime fp32", lambda: RTDETR(rep["path"], threads=threads), "rtdetr export")
            if int8:
                add(
                    "onnxruntime int8", lambda: RTDETR(rep["int8_path"], threads=threads), "rtdetr export --int8", note8
                )
        if "openvino" in graphs:
            try:  # the row is named after the precision OpenVINO picks on this CPU
                ov = RTDETR(rep["openvino_path"], threads=threads)
                add(f"openvino ({ov.precision})", lambda: ov, "rtdetr export --format openvino")
            except (RuntimeError, ValueError, OSError) as e:
                add("openvino", functools.partial(_raise, e), "rtdetr export --format openvino")
            if int8:
                add("openvino int8", lambda: RTDETR(rep["openvino_int8_path"], threads=threads),
                    "rtdetr export --format openvino --int8", note8)  # fmt: skip
        if tmp is not None:
            tmp.cleanup()
    base = rows[0]["end_to_end_ms"]
    for r in rows:
        r["vs_eager"] = None if r["end_to_end_ms"] is None else round(r["end_to_end_ms"] / base, 3)
    precision, reason = choose_precision("auto", "cpu")
    auto_path = f"pytorch fused {precision} + channels_last"
    return {
        "cpu": info.as_dict(),
        "model": str(model),
        "image_size": list(size),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "warmup": warmup,
        "runs": runs,
        "torch": torch.__version__,
        "auto": {"precision": precision, "reason": reason, "path": auto_path},
        "rows": rows,
        "fastest": min((r for r in rows if r["end_to_end_ms"] is not None), key=lambda r: r["end_to_end_ms"])["path"],
    }


def format_paths(res: dict[str, Any]) -> str:
    """The table ``rtdetr benchmark --all-paths`` prints."""
    cpu = res["cpu"]
    lines = [
        f"CPU: {cpu['model']} ({cpu['class']}{' under ' + cpu['isa_cap'] if cpu.get('isa_cap') else ''}; "
        f"{' '.join(cpu['key_flags'])}), {res['threads']} threads; "
        f"{res['model']} at {size_text(res['image_size'])}, batch 1, median of {res['runs']} runs (p90), end to end",
        f"{'path':<38}{'ms (p90)':>18}{'model ms':>10}{'vs eager':>10}  how",
    ]
    for r in res["rows"]:
        note = f"  [{r['note']}]" if r["note"] else ""
        if r["end_to_end_ms"] is None:
            lines.append(f"{r['path']:<38}{'failed':>18}{'-':>10}{'-':>10}  {r['how']}{note}")
            continue
        cell = f"{r['end_to_end_ms']:.1f} ({r['end_to_end_p90_ms']:.1f})"
        lines.append(f"{r['path']:<38}{cell:>18}{r['model_ms']:>10.1f}{r['vs_eager']:>9.2f}x  {r['how']}{note}")
    lines.append(
        f"precision='auto' runs {res['auto']['path']} ({res['auto']['reason']}); fastest here: {res['fastest']}"
    )
    if cpu.get("isa_cap"):  # measured: a convolution graph times the same with and without ONEDNN_MAX_CPU_ISA=AVX2
        lines.append(f"{cpu['isa_cap']} caps PyTorch and OpenVINO; ONNX Runtime ignores it and uses the whole CPU")
    return "\n".join(lines)
