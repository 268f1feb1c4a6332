"""Our training augmentations against torchvision's transforms v2, which the official code runs, by distribution.

The official pipeline (``configs/*/include/dataloader.yml``) is RandomPhotometricDistort(p 0.5),
RandomZoomOut(fill 0), RandomIoUCrop wrapped to apply with p 0.8, SanitizeBoundingBoxes(min_size 1), then flip
and resize. Ours (``rtdetr.data.transforms``) is written here without torchvision, and draws its random numbers
in another order, so the two cannot be compared draw for draw: this script runs both many times on one image
with boxes and compares the distributions of what comes out (two-sample Kolmogorov-Smirnov tests): the
geometric ops' output height and width, boxes kept, their area and position; the photometric op's pixel mean,
spread and colour balance. Ours blends contrast and saturation towards Pillow's grey image (red 0.299: the
official pipeline distorts PIL images, so torchvision runs Pillow's ImageEnhance there), torchvision's tensor
kernel towards its own (red 0.2989); that moves a pixel by less than 1e-4, but the pixel mean after a contrast or
saturation draw lies within about 1e-4 of the original's, so a KS test over 10 000 draws sees it. The comparison
therefore runs ours with torchvision's grey weights (``TV_GREY``) and reports ours as shipped beside it.
``--same-draws N`` checks the photometric op draw for draw instead: torchvision draws its parameters (which
operations, their factors, the contrast's place, the channel order), ours is handed the same ones through its
random sources, and the two images must agree pixel for pixel. ``--broken crop_p=0.7`` (or ``zoom_max=3``,
``crop_min_scale=0.4``) runs a deliberately altered copy of ours, to show what the comparison detects.

Needs torchvision, so it runs in the official code's environment (``/tmp/peer``; see ``official_parity.py``)::

    PYTHONPATH=src /tmp/peer/bin/python benchmarks/official_augment_stats.py --draws 10000 \\
        --out benchmarks/results_official_augment_stats.json
    PYTHONPATH=src /tmp/peer/bin/python benchmarks/official_augment_stats.py --same-draws 3000 \\
        --out benchmarks/results_official_augment_same_draws.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import ks_2samp

from rtdetr.data.transforms import PhotometricDistort, RandomIoUCrop, Sample, Sanitize, ZoomOut

H, W = 120, 160
#: xyxy pixel boxes of the test image: small, large, at the borders, the whole image
BOXES = [[10, 10, 60, 50], [70, 20, 150, 110], [5, 80, 40, 118], [100, 5, 120, 30], [50, 50, 90, 90], [0, 0, 160, 120]]
GEOMETRY = ("height", "width", "boxes kept", "box area / image", "mean x0 / width")
PHOTOMETRY = ("pixel mean", "pixel std", "red - blue")
#: a deliberately altered copy of ours: name -> what it changes
#: torchvision's rgb_to_grayscale on tensors; ours (Pillow's convert("L")) weighs red 0.299
TV_GREY = (0.2989, 0.587, 0.114)
BROKEN = {"crop_p": "IoU crop probability", "zoom_max": "zoom-out's largest side ratio", "crop_min_scale": "crop scale"}


def geometry(h: int, w: int, boxes: torch.Tensor) -> list[float]:
    if not len(boxes):
        return [h, w, 0, 0.0, -1.0]
    area = float(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum()) / (h * w)
    return [h, w, len(boxes), area, float(boxes[:, 0].mean()) / w]


def photometry(img: torch.Tensor) -> list[float]:
    return [float(img.mean()), float(img.std()), float(img[0].mean() - img[2].mean())]


def compare(a: np.ndarray, b: np.ndarray, names: tuple[str, ...]) -> list[dict]:
    rows = []
    for j, name in enumerate(names):
        test = ks_2samp(a[:, j], b[:, j])
        rows.append({"stat": name, "torchvision_mean": float(a[:, j].mean()), "ours_mean": float(b[:, j].mean()),
                     "ks": float(test.statistic), "p": float(test.pvalue)})  # fmt: skip
    return rows


def run(draws: int, seed: int, broken: dict[str, float]) -> dict:
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    torch.manual_seed(seed)
    random.seed(seed)
    img = torch.rand(3, H, W)
    boxes = torch.tensor(BOXES, dtype=torch.float32)
    labels = torch.arange(len(boxes))
    zoom, crop, sanitize = v2.RandomZoomOut(fill=0), v2.RandomIoUCrop(), v2.SanitizeBoundingBoxes(min_size=1)

    def official(d: dict) -> dict:
        d = zoom(d)
        if torch.rand(1) < 0.8:  # the official RandomIoUCrop wrapper's p
            d = crop(d)
        return sanitize(d)

    ours = [
        ZoomOut(side_range=(1.0, broken.get("zoom_max", 4.0))),
        RandomIoUCrop(p=broken.get("crop_p", 0.8), min_scale=broken.get("crop_min_scale", 0.3)),
        Sanitize(),
    ]
    theirs_g, ours_g, theirs_p, ours_p, shipped_p = [], [], [], [], []
    distort_t, distort_o = v2.RandomPhotometricDistort(p=0.5), PhotometricDistort(grey=TV_GREY)
    shipped = PhotometricDistort()
    for _ in range(draws):
        box = tv_tensors.BoundingBoxes(boxes.clone(), format="XYXY", canvas_size=(H, W))
        d = official({"image": tv_tensors.Image(img.clone()), "boxes": box, "labels": labels.clone()})
        theirs_g.append(geometry(d["image"].shape[-2], d["image"].shape[-1], d["boxes"].as_subclass(torch.Tensor)))
        s = Sample(img.clone(), boxes.clone(), labels.clone())
        for op in ours:
            s = op(s)
        ours_g.append(geometry(s.size[0], s.size[1], s.boxes))
        theirs_p.append(photometry(distort_t(tv_tensors.Image(img.clone())).as_subclass(torch.Tensor)))
        ours_p.append(photometry(distort_o(Sample(img.clone(), boxes, labels)).image))
        shipped_p.append(photometry(shipped(Sample(img.clone(), boxes, labels)).image))
    return {
        "seed": seed,
        "geometry": compare(np.array(theirs_g), np.array(ours_g), GEOMETRY),
        "photometry": compare(np.array(theirs_p), np.array(ours_p), PHOTOMETRY),
        "photometry_pillow_grey": compare(np.array(theirs_p), np.array(shipped_p), PHOTOMETRY),
    }


def same_draws(draws: int, seed: int) -> dict:
    """Ours against torchvision's RandomPhotometricDistort on the parameters torchvision drew, ``draws`` times:
    the largest pixel difference, ours with torchvision's grey weights and as shipped."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    torch.manual_seed(seed)
    img = torch.rand(3, H, W)
    theirs = v2.RandomPhotometricDistort(p=0.5)
    variants = {"torchvision_grey": PhotometricDistort(grey=TV_GREY), "pillow_grey": PhotometricDistort()}
    sample = Sample(img, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    worst = dict.fromkeys(variants, 0.0)
    for _ in range(draws):
        prm = theirs.make_params([tv_tensors.Image(img)])
        want = theirs.transform(tv_tensors.Image(img.clone()), prm).as_subclass(torch.Tensor)
        for name, ours in variants.items():
            worst[name] = max(worst[name], float((replay(ours, sample, prm) - want).abs().max()))
    return {"draws": draws, "seed": seed, "max_pixel_difference": worst}


def replay(ours: PhotometricDistort, sample: Sample, prm: dict) -> torch.Tensor:
    """``ours`` on ``sample`` with the parameters torchvision drew (``prm``): ours takes its coins from
    ``random.random``, its factors from ``_rand`` and its channel order from ``torch.randperm``, which are fed
    torchvision's choices in the order ours asks for them."""
    import types

    from rtdetr.data import transforms as ours_module

    on = {k: prm[f"{k}_factor"] is not None for k in ("brightness", "contrast", "saturation", "hue")}
    first = prm["contrast_before"]
    order = ["brightness", *(["contrast"] if first else []), "saturation", "hue", *([] if first else ["contrast"])]
    coins = iter([on["brightness"], first, *[on[k] for k in order[1:]], prm["channel_permutation"] is not None])
    factors = iter([prm[f"{k}_factor"] for k in order if on[k]])
    saved = ours_module.random, ours_module._rand, torch.randperm
    ours_module.random = types.SimpleNamespace(random=lambda: 0.0 if next(coins) else 0.99)  # type: ignore[assignment]
    ours_module._rand = lambda lo, hi: next(factors)  # type: ignore[assignment]
    torch.randperm = lambda n, *a, **k: prm["channel_permutation"]  # type: ignore[assignment]
    try:
        got = ours(sample).image
    finally:
        ours_module.random, ours_module._rand, torch.randperm = saved
    if next(coins, None) is not None or next(factors, None) is not None:
        raise RuntimeError("ours asked for fewer random draws than torchvision made")
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=10000, help="samples per pipeline and seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--broken", nargs="*", default=[], metavar="NAME=VALUE", help=f"alter ours: {', '.join(BROKEN)}")
    ap.add_argument("--alpha", type=float, default=0.001, help="a p-value below this counts as a difference")
    ap.add_argument("--same-draws", type=int, default=0, metavar="N", help="the photometric op draw for draw")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.same_draws:
        result = {"torch": torch.__version__, "same_draws": [same_draws(args.same_draws, s) for s in args.seeds]}
        for r in result["same_draws"]:
            worst = ", ".join(f"{k} {v:.2e}" for k, v in r["max_pixel_difference"].items())
            print(f"seed {r['seed']}: {r['draws']} draws, largest pixel difference: {worst}")
        if args.out:
            args.out.write_text(json.dumps(result, indent=1) + "\n")
        return 0
    broken = {}
    for item in args.broken:
        name, _, value = item.partition("=")
        if name not in BROKEN or not value:
            ap.error(f"--broken takes NAME=VALUE with NAME one of {', '.join(BROKEN)}; got {item!r}")
        broken[name] = float(value)
    runs = [run(args.draws, seed, broken) for seed in args.seeds]
    for r in runs:
        for row in (
            r["geometry"] + r["photometry"] + [{**x, "stat": f"{x['stat']} *"} for x in r["photometry_pillow_grey"]]
        ):
            print(f"seed {r['seed']} {row['stat']:18s} torchvision {row['torchvision_mean']:9.4f} ours "
                  f"{row['ours_mean']:9.4f}  KS {row['ks']:.4f} p={row['p']:.3g}")  # fmt: skip
    worst = min(row["p"] for r in runs for row in r["geometry"] + r["photometry"])
    result = {"torch": torch.__version__, "draws": args.draws, "broken": broken, "alpha": args.alpha, "runs": runs,
              "smallest_p": worst, "same_distributions": worst >= args.alpha}  # fmt: skip
    print(f"smallest p {worst:.3g}: {'no difference found' if worst >= args.alpha else 'the distributions differ'}"
          " (* ours as shipped, with Pillow's grey weights; not counted)")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
