"""COCO box metrics through faster-coco-eval (or pycocotools): the 12 standard numbers and per-class AP."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rtdetr.data.records import DatasetIndex

__all__ = ["STAT_NAMES", "CocoEvaluator", "coco_gt_from_index", "ground_truth_for"]

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


def coco_gt_from_index(index: DatasetIndex) -> dict[str, Any]:
    """A COCO ground-truth dict for any parsed dataset; category ids are the source's (COCO) or ``label + 1``."""
    cat_ids = index.category_ids or list(range(1, index.num_classes + 1))
    images: list[dict] = []
    anns: list[dict] = []
    for rec in index.records:
        w, h = rec.width, rec.height
        if w is None or h is None:
            from PIL import Image

            with Image.open(rec.path) as im:
                w, h = im.size
        images.append({"id": int(rec.image_id), "width": int(w), "height": int(h), "file_name": rec.path.name})
        for box, label in zip(rec.boxes.tolist(), rec.labels.tolist()):
            bw, bh = box[2] - box[0], box[3] - box[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": int(rec.image_id),
                    "category_id": cat_ids[label],
                    "bbox": [box[0], box[1], bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    cats = [{"id": c, "name": n} for c, n in zip(cat_ids, index.class_names)]
    return {"images": images, "annotations": anns, "categories": cats}


def ground_truth_for(index: DatasetIndex) -> tuple[dict[str, Any], str]:
    """The COCO ground truth to evaluate ``index`` against, and a line saying which it is.

    A COCO json is used as given (crowd regions, annotation areas and ids as in the file), so the numbers are
    pycocotools' on that json. YOLO and VOC sets have no such file: their ground truth is rebuilt from the parsed
    boxes (:func:`coco_gt_from_index`: no crowd regions, area = box area).
    """
    if index.format == "coco":
        import json

        with open(index.source, encoding="utf-8") as f:
            gt = json.load(f)
        gt.setdefault("annotations", [])
        return gt, f"ground truth: {index.source} as given (crowds and areas from the file)"
    return coco_gt_from_index(index), f"ground truth: rebuilt from the {index.format} boxes (no crowds, box areas)"


def _backend() -> tuple[Any, Any, str]:
    try:
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster, "faster_coco_eval"
    except ImportError:
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            return COCO, COCOeval, "pycocotools"
        except ImportError:
            raise ImportError(
                "COCO evaluation needs faster-coco-eval or pycocotools (pip install faster-coco-eval)"
            ) from None


class CocoEvaluator:
    """Accumulate detections per image and compute COCO bbox metrics.

    Args:
        gt: COCO ground-truth dict (see :func:`coco_gt_from_index`).
        label_to_category: category id for each contiguous label (default: the gt's categories in sorted order).
        backend: ``"auto"``, ``"faster_coco_eval"`` or ``"pycocotools"``.
    """

    def __init__(self, gt: dict[str, Any], label_to_category: list[int] | None = None, backend: str = "auto") -> None:
        self.gt = gt
        self.cat_ids = label_to_category or sorted(c["id"] for c in gt["categories"])
        self.backend = backend
        self.results: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.results = []

    def update(self, image_ids: Iterable[int], detections: Iterable[dict[str, Tensor]]) -> None:
        """``detections``: per image ``labels`` ``[K]``, ``boxes`` ``[K, 4]`` absolute xyxy, ``scores`` ``[K]``."""
        for image_id, det in zip(image_ids, detections):
            boxes = det["boxes"].detach().float().cpu().numpy()
            scores = det["scores"].detach().float().cpu().numpy()
            labels = det["labels"].detach().cpu().numpy()
            for b, s, lb in zip(boxes, scores, labels):
                self.results.append(
                    {
                        "image_id": int(image_id),
                        "category_id": self.cat_ids[int(lb)],
                        "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                        "score": float(s),
                    }
                )

    def evaluate(self, results: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Return ``{"stats": {name: value}, "per_class_ap": {category_id: AP}, "backend": str}``.

        With no detections at all every number is 0 (rather than the -1 COCO uses for "undefined").
        """
        results = self.results if results is None else results
        coco_cls, eval_cls, name = self._select_backend()
        if not results:
            return {
                "stats": dict.fromkeys(STAT_NAMES, 0.0),
                "per_class_ap": {},
                "per_class_ap50": {},
                "precision": None,
                "backend": name,
            }
        with contextlib.redirect_stdout(io.StringIO()):
            gt = coco_cls()
            gt.dataset = copy.deepcopy(self.gt)
            gt.createIndex()
            dt = gt.loadRes(copy.deepcopy(results))
            ev = eval_cls(gt, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = {n: float(v) for n, v in zip(STAT_NAMES, ev.stats)}
        precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
        per_class, per_class50 = {}, {}
        for k, cat in enumerate(ev.params.catIds):
            p = precision[:, :, k, 0, -1]
            per_class[int(cat)] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
            p50 = precision[0, :, k, 0, -1]
            per_class50[int(cat)] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else float("nan")
        return {
            "stats": stats,
            "per_class_ap": per_class,
            "per_class_ap50": per_class50,
            "precision": precision,
            "backend": name,
        }

    def _select_backend(self) -> tuple[Any, Any, str]:
        if self.backend == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            return COCO, COCOeval, "pycocotools"
        if self.backend == "faster_coco_eval":
            from faster_coco_eval import COCO, COCOeval_faster

            return COCO, COCOeval_faster, "faster_coco_eval"
        return _backend()


@contextlib.contextmanager
def _decoder_depth(model: Any, depth: int | None) -> Iterator[None]:
    """Run with ``depth`` decoder layers, then restore the model's own depth."""
    saved = getattr(model, "decoder_depth", None)
    if depth is not None:
        model.set_decoder_depth(depth)
    try:
        yield
    finally:
        if depth is not None and saved is not None:
            model.set_decoder_depth(saved)


def iter_detections(
    model: Any, postprocessor: torch.nn.Module, loader: Iterable, device: torch.device | str = "cpu", fast: Any = None
) -> Iterator[tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]]:
    """``(detections, targets)`` per batch of ``loader``; ``model`` is an RTDETR module (optionally run through a
    :class:`~rtdetr.engine.predictor.FastPath`) or an exported runtime with ``detect(images, sizes)``."""
    for images, targets in loader:
        sizes = torch.stack([t["orig_size"] for t in targets])
        if not isinstance(model, torch.nn.Module):
            yield model.detect(images, sizes), targets
            continue
        if fast is None:
            out = model(images.to(device))
        else:
            with fast.context():
                out = {k: v.float() for k, v in model(fast.input(images)).items()}
        yield postprocessor(out, sizes.to(device)), targets


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    postprocessor: torch.nn.Module,
    loader: Iterable,
    evaluator: CocoEvaluator,
    device: torch.device | str = "cpu",
    decoder_depth: int | None = None,
) -> dict[str, Any]:
    """Run ``model`` over ``loader`` (batches of ``(images, targets)``) and evaluate; restores the model's mode and
    decoder depth afterwards."""
    was_training = model.training
    model.eval()
    evaluator.reset()
    try:
        with _decoder_depth(model, decoder_depth):
            for dets, targets in iter_detections(model, postprocessor, loader, device):
                evaluator.update([int(t["image_id"]) for t in targets], dets)
        return evaluator.evaluate()
    finally:
        model.train(was_training)


@torch.no_grad()
def validate(
    model: Any,
    index: DatasetIndex,
    image_size: tuple[int, int],
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    decoder_depth: int | None = None,
    conf: float = 0.5,
    save_dir: str | None = None,
    workers: int = 0,
    class_names: list[str] | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` (an RTDETR module or an ONNX Runtime detector) on a parsed dataset: COCO stats,
    per-class AP/AP50, precision/recall/F1 and a confusion
    matrix at score ``conf``; with ``save_dir`` also the report files (see :func:`rtdetr.engine.metrics.save_report`).
    """
    from torch.utils.data import DataLoader

    from rtdetr.data import BatchCollator, DetectionDataset
    from rtdetr.data.transforms import build_val_transforms
    from rtdetr.engine.metrics import ThresholdMetrics, save_report
    from rtdetr.engine.predictor import FastPath
    from rtdetr.models.postprocess import PostProcessor

    names = class_names or index.class_names
    onnx = not isinstance(model, torch.nn.Module)
    num_classes = getattr(model, "num_classes", None) if onnx else getattr(model.config, "num_classes", None)
    num_classes = num_classes or len(names)
    if num_classes != index.num_classes:
        raise ValueError(f"the model predicts {num_classes} classes but {index.source} has {index.num_classes}")
    cat_ids = index.category_ids or list(range(1, index.num_classes + 1))
    gt, gt_note = ground_truth_for(index)
    evaluator = CocoEvaluator(gt, label_to_category=cat_ids)
    loader = DataLoader(
        DetectionDataset(index, build_val_transforms(image_size)),
        batch_size,
        shuffle=False,
        collate_fn=BatchCollator(),
        num_workers=workers,
    )
    post = PostProcessor(num_classes)
    thresholds = ThresholdMetrics(num_classes, conf)
    records = {int(r.image_id): r for r in index.records}
    if decoder_depth is not None and onnx:
        raise ValueError("the decoder depth of an ONNX model is fixed at export")
    fast = FastPath(precision, channels_last, device)
    if not onnx:
        model = fast.prepare(model.to(device).eval())
    with _decoder_depth(model, decoder_depth):
        for dets, targets in iter_detections(model, post, loader, device, None if onnx else fast):
            ids = [int(t["image_id"]) for t in targets]
            evaluator.update(ids, dets)
            for image_id, det in zip(ids, dets):
                rec = records[image_id]
                thresholds.update(
                    det["boxes"].cpu().numpy(),
                    det["labels"].cpu().numpy(),
                    det["scores"].cpu().numpy(),
                    rec.boxes,
                    rec.labels,
                )
    coco = evaluator.evaluate()
    out: dict[str, Any] = {
        "stats": coco["stats"],
        "backend": coco["backend"],
        "ground_truth": gt_note,
        "threshold": thresholds.overall(),
        "per_class": {},
    }
    pc = thresholds.per_class()
    for k, (name, cat) in enumerate(zip(names, cat_ids)):
        out["per_class"][name] = {
            "AP": coco["per_class_ap"].get(cat, float("nan")),
            "AP50": coco["per_class_ap50"].get(cat, float("nan")),
            "precision": float(pc["precision"][k]),
            "recall": float(pc["recall"][k]),
            "f1": float(pc["f1"][k]),
        }
    if save_dir is not None:
        from pathlib import Path

        out["files"] = save_report(Path(save_dir), names, cat_ids, coco, thresholds, evaluator.results)
    return out
