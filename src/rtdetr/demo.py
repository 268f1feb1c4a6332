"""``make demo``: a tour of the model on an embedded, generated image; needs no data and no downloads.

It builds ``rtdetr_r18vd``, checks it against its published size, runs detection on a generated scene at 640x640
with the full and a truncated decoder, fuses it for deployment and checks the outputs did not move, and saves and
reloads a checkpoint. The weights are random (no pretrained weights exist offline), so the detections themselves
are meaningless; the numbers printed are the point.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from rtdetr.bench.profile import count_gflops, count_parameters, measure_latency
from rtdetr.convert import load_model, save_model
from rtdetr.models import PostProcessor, create_model, get_variant
from rtdetr.ops.compare import max_query_set_diff


def synthetic_scene(size: int = 640, seed: int = 0) -> Image.Image:
    """A generated RGB scene: gradient background with random rectangles, ellipses and triangles."""
    rng = random.Random(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    bg = np.stack([0.3 + 0.4 * xx, 0.4 + 0.3 * yy, 0.5 + 0.2 * xx * yy], -1)
    img = Image.fromarray((bg * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        w, h = rng.randint(40, 200), rng.randint(40, 200)
        x, y = rng.randint(0, size - w), rng.randint(0, size - h)
        color = tuple(rng.randint(0, 255) for _ in range(3))
        kind = rng.choice(["rect", "ellipse", "triangle"])
        if kind == "rect":
            draw.rectangle([x, y, x + w, y + h], fill=color)
        elif kind == "ellipse":
            draw.ellipse([x, y, x + w, y + h], fill=color)
        else:
            draw.polygon([(x + w // 2, y), (x, y + h), (x + w, y + h)], fill=color)
    return img


def to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """Resize (aspect ratio not kept, as the official pipeline) and scale to ``[0, 1]``: ``[1, 3, size, size]``."""
    arr = np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="rtdetr_r18vd")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--out", default="outputs/demo")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    spec = get_variant(args.variant)
    model = create_model(args.variant).eval()
    params = count_parameters(model) / 1e6
    gflops = count_gflops(model, (args.size, args.size))
    print(
        f"[1/5] built {args.variant}: {params:.2f}M params (published {spec.params_m}M), "
        f"{gflops:.1f} GFLOPs at {args.size} (published {spec.gflops})"
    )

    img = synthetic_scene(args.size)
    img.save(out_dir / "scene.png")
    x = to_tensor(img, args.size)
    post = PostProcessor(num_classes=model.config.num_classes if model.config else 80)
    orig = torch.tensor([[img.width, img.height]])
    with torch.inference_mode():
        stats = measure_latency(lambda: model(x), warmup=2, runs=5)
        dets = post(model(x), orig)[0]
    print(
        f"[2/5] detection on a generated {args.size}x{args.size} scene: {stats.median_ms:.0f} ms median "
        f"({args.threads} threads); top score {dets['scores'][0]:.3f} (random weights: scores are meaningless)"
    )

    depth = model.decoder_depth
    with torch.inference_mode():
        model.set_decoder_depth(1)
        short = measure_latency(lambda: model(x), warmup=1, runs=5)
        model.set_decoder_depth(depth)
    print(
        f"[3/5] decoder depth {depth} -> 1 at inference, no retraining: {stats.median_ms:.0f} -> "
        f"{short.median_ms:.0f} ms"
    )

    ckpt = save_model(model, out_dir / f"{args.variant}.pth")
    reloaded = load_model(ckpt).eval()
    with torch.inference_mode():
        a, b = model(x), reloaded(x)
    same = torch.equal(a["pred_logits"], b["pred_logits"])
    print(f"[4/5] saved {ckpt} and reloaded it from its embedded config: outputs identical = {same}")

    with torch.inference_mode():
        ref = model(x)
        model.deploy()
        fused = model(x)
        fused_stats = measure_latency(lambda: model(x), warmup=1, runs=5)
    diff = max_query_set_diff(fused, ref)
    print(
        f"[5/5] deploy(): RepVGG + Conv/BN fused, {count_parameters(model) / 1e6:.2f}M params, "
        f"{fused_stats.median_ms:.0f} ms; max |diff| vs unfused = {diff:.2e}"
    )
    ok = same and diff < 1e-3
    print("demo finished: outputs in", out_dir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
