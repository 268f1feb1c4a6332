"""``rtdetr val`` against the official evaluation pipeline, end to end, on a trained checkpoint.

The official side is the official RT-DETRv2 code's own evaluation (``src/solver/det_engine.py``'s ``evaluate``):
its ``CocoDetection`` dataset reading the images with PIL, its validation transforms (``Resize`` to the input
size, ``ConvertPILImage``), its ``RTDETRPostProcessor`` (boxes scaled by each image's original size) and its
``CocoEvaluator`` (faster-coco-eval). The network in it is ours, loaded from the checkpoint:
``official_parity.py`` shows the two networks agree to the last bit on the same weights, so what is compared here
is everything around the network: image decoding and resizing, the original-size bookkeeping, the top-k, the
label-to-category mapping and the metrics. Ours is ``RTDETR(checkpoint, precision="fp32").val(data)`` (the
official evaluation runs in fp32; ``--precision auto`` shows what bf16 changes where ``auto`` picks it), with its
``predictions.json``.

The images are the checkpoint's COCO validation set, each resized to its own random size (``--sizes``, width and
height drawn apart, boxes scaled with it, saved as PNG), so that resizing and box scaling are exercised, not only
images already at the input size; ``--as-is`` evaluates the set as it is. Reported: the 12 COCO numbers of
both, and every detection paired per image (``compare_detections``: labels, scores, boxes in pixels).

Made for the demo's checkpoint (``make demo`` writes ``outputs/demo/run/best.pth`` and its data), and for an
official COCO model on coco128 (``--official-variant``: the official model with every weight redrawn, saved as a
release file and loaded by ``RTDETR``; its post-processor maps labels to COCO's category ids itself). Redrawn
weights amplify the last-bit differences of our fused path, so that run compares ours unfused (``--plain``)::

    PYTHONPATH=src /tmp/peer/bin/python benchmarks/official_eval_parity.py \\
        --out benchmarks/results_official_eval_parity.json
    PYTHONPATH=src /tmp/peer/bin/python benchmarks/official_eval_parity.py --official-variant rtdetrv2_r18vd \\
        --ann ../shared/datasets/coco128/annotations/instances_train2017.json \\
        --images ../shared/datasets/coco128/train2017 --as-is --plain \\
        --out benchmarks/results_official_eval_parity_coco128.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from official_parity import VARIANTS, official_code, official_config, redrawn_model, save_release  # noqa: E402
from rtdetr import RTDETR  # noqa: E402
from rtdetr.engine.hardware import cpu_info  # noqa: E402
from rtdetr.export.onnx import compare_detections  # noqa: E402

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def resized_set(ann: Path, images: Path, dst: Path, sizes: tuple[int, int], seed: int) -> tuple[Path, Path]:
    """A copy of the COCO set ``ann`` (images in ``images``) with each image resized to its own random width and
    height in ``sizes`` (bilinear, saved as PNG) and its boxes scaled with it; its json and image folder."""
    data = json.loads(ann.read_text())
    rng = random.Random(seed)
    (dst / "val").mkdir(parents=True)
    (dst / "annotations").mkdir()
    scale: dict[int, tuple[float, float]] = {}
    for im in data["images"]:
        w, h = rng.randint(*sizes), rng.randint(*sizes)
        picture = Image.open(images / im["file_name"]).convert("RGB")
        scale[im["id"]] = (w / picture.width, h / picture.height)
        im["file_name"] = Path(im["file_name"]).with_suffix(".png").name
        picture.resize((w, h), Image.BILINEAR).save(dst / "val" / im["file_name"])
        im["width"], im["height"] = w, h
    for a in data["annotations"]:
        sx, sy = scale[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        a["bbox"] = [x * sx, y * sy, bw * sx, bh * sy]
        a["area"] = a["bbox"][2] * a["bbox"][3]
    (dst / "annotations" / "instances_val.json").write_text(json.dumps(data))
    return dst / "annotations" / "instances_val.json", dst / "val"


def official_eval(
    root: Path, network: torch.nn.Module, ann: Path, images: Path, size: tuple[int, int], top_k: int, mscoco: bool
) -> tuple:
    """The official evaluation of ``network`` on the COCO set ``ann`` (images in ``images``): its 12 COCO numbers
    and its detections as ``{image_id: (labels as category ids, xyxy boxes, scores)}``. ``mscoco``: the official
    post-processor maps labels to COCO's category ids itself (``remap_mscoco_category``), as for its COCO
    models; else labels are mapped to the set's category ids in sorted order."""
    ann, images = ann.resolve(), images.resolve()  # the official code runs in its own folder
    with official_code(root / "rtdetrv2_pytorch"):
        from src.data import transforms as T
        from src.data.dataloader import BatchImageCollateFunction
        from src.data.dataset.coco_dataset import CocoDetection
        from src.data.dataset.coco_eval import CocoEvaluator
        from src.solver.det_engine import evaluate
        from src.zoo.rtdetr.rtdetr_postprocessor import RTDETRPostProcessor

        ops = [{"type": "Resize", "size": list(size)}, {"type": "ConvertPILImage", "dtype": "float32", "scale": True}]
        dataset = CocoDetection(str(images), str(ann), T.Compose(ops), remap_mscoco_category=False)
        loader = torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=BatchImageCollateFunction())
        categories = torch.tensor(sorted(dataset.coco.getCatIds()))
        num_classes = len(categories)
        post = RTDETRPostProcessor(
            num_classes, use_focal_loss=True, num_top_queries=top_k, remap_mscoco_category=mscoco
        )
        found: dict[int, tuple] = {}

        class Recorded(torch.nn.Module):
            """The official post-processor, its labels (class indices) mapped to the set's category ids as its
            ``remap_mscoco_category`` does for COCO's; every image's detections kept for the comparison."""

            def forward(self, outputs: dict, sizes: torch.Tensor) -> list[dict]:
                results = post(outputs, sizes)
                for r in results:
                    r["labels"] = r["labels"] if mscoco else categories[r["labels"]]
                return results

        recorder = Recorded()

        def keep(res: dict) -> None:
            for image_id, r in res.items():
                found[image_id] = (r["labels"].numpy(), r["boxes"].numpy(), r["scores"].numpy())

        evaluator = CocoEvaluator(dataset.coco, ["bbox"])
        update = evaluator.update
        evaluator.update = lambda res: (keep(res), update(res))  # type: ignore[method-assign]
        with torch.no_grad():
            stats, _ = evaluate(network.eval(), torch.nn.Identity(), recorder, loader, evaluator, torch.device("cpu"))
    return stats["coco_eval_bbox"], found


def official_checkpoint(root: Path, variant: str, dst: Path, seed: int) -> Path:
    """An official release file (``{"ema": {"module": ...}}``) of ``variant``, the official model built from its
    config with every weight redrawn (``randomize_for_parity``): AP near zero, detections still comparable."""
    with official_code(root / VARIANTS[variant][0]) as off:
        return save_release(redrawn_model(official_config(off, variant), seed), dst)


def our_detections(predictions: Path) -> dict[int, tuple]:
    """``predictions.json`` (COCO results: xywh) as ``{image_id: (category ids, xyxy boxes, scores)}``."""
    by_image: dict[int, list[dict]] = {}
    for d in json.loads(predictions.read_text()):
        by_image.setdefault(d["image_id"], []).append(d)
    out = {}
    for image_id, dets in by_image.items():
        boxes = np.array([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        out[image_id] = (np.array([d["category_id"] for d in dets]), boxes, np.array([d["score"] for d in dets]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("outputs/demo/run/best.pth"))
    ap.add_argument("--official-variant", default=None, metavar="NAME",
                    help="instead of --checkpoint: an official model, every weight redrawn")  # fmt: skip
    ap.add_argument("--ann", type=Path, default=Path("outputs/demo/data/annotations/instances_val.json"))
    ap.add_argument("--images", type=Path, default=Path("outputs/demo/data/val"), help="the images --ann names")
    ap.add_argument("--official", type=Path, default=Path("../shared/peers/rtdetr_official"))
    ap.add_argument("--sizes", type=int, nargs=2, default=[96, 300], metavar=("MIN", "MAX"))
    ap.add_argument("--as-is", action="store_true", help="evaluate the images as they are, not resized")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="fp32", help="ours: fp32 (the official evaluation's) or auto, bf16, ...")
    ap.add_argument("--plain", action="store_true",
                    help="ours unfused, NCHW (the module the official side runs), not val's fused path")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    official = args.official.resolve()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        ann, images = (args.ann, args.images) if args.as_is else resized_set(
            args.ann, args.images, tmp / "data", tuple(args.sizes), args.seed
        )  # fmt: skip
        checkpoint = args.checkpoint
        if args.official_variant:
            checkpoint = official_checkpoint(official, args.official_variant, tmp / "official.pth", args.seed)
        plain = {"fuse": False, "channels_last": False} if args.plain else {}
        det = RTDETR(str(checkpoint), device="cpu", precision=args.precision, **plain)
        ours = det.val(data=str(ann), output=str(tmp / "ours"))
        mine = our_detections(tmp / "ours" / "predictions.json")
        network = det.model
        queries = int(network.decoder.num_queries)  # type: ignore[union-attr]
        top_k = min(300, queries * len(det.class_names))  # ours: max_det 300, at most every query x class
        mscoco = args.official_variant is not None  # an official COCO model: its post-processor maps to COCO ids
        theirs_stats, theirs = official_eval(official, network, ann, images, tuple(det.image_size), top_k, mscoco)
    ours_stats = [ours["stats"][k] for k in STATS]
    stat_diff = max(abs(a - b) for a, b in zip(ours_stats, theirs_stats))
    missing = sorted(set(theirs) ^ set(mine))
    pairs = [compare_detections(tuple(a[None] for a in theirs[i]), tuple(b[None] for b in mine[i])) for i in theirs]
    row = {
        "images": len(theirs),
        "images_with_detections_on_one_side_only": missing,
        "detections_per_image": int(np.median([len(v[0]) for v in theirs.values()])),
        "official_stats": dict(zip(STATS, theirs_stats)),
        "our_stats": dict(zip(STATS, ours_stats)),
        "max_stat_diff": stat_diff,
        "max_score_diff": max(p[0] for p in pairs),
        "max_box_diff_px": max(p[1] for p in pairs),
        "label_agreement": min(p[2] for p in pairs),
    }
    for k in STATS:
        print(f"{k:<6} official {row['official_stats'][k]:.6f}  ours {row['our_stats'][k]:.6f}")
    print(f"{row['images']} images; largest difference: COCO number {stat_diff:.2e}, "
          f"score {row['max_score_diff']:.2e}, box {row['max_box_diff_px']:.2e} px, "
          f"labels agree {row['label_agreement']:.3f}")  # fmt: skip
    if args.out:
        result = {
            "what": "rtdetr val vs the official evaluation pipeline (dataset, transforms, post-processor, "
            "CocoEvaluator) around the same network",
            "checkpoint": f"official {args.official_variant}, weights redrawn"
            if args.official_variant
            else str(args.checkpoint),
            "our_precision": det.precision,
            "our_path": "unfused, NCHW" if args.plain else "fused, channels_last (val's default)",
            "data": str(args.ann) + ("" if args.as_is else f", each image resized to a random size in {args.sizes}"),
            "torch": torch.__version__,
            "cpu": cpu_info().as_dict(),
            **row,
        }
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
