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

from rtdetr.data.records import DatasetIndex, image_file_size
from rtdetr.engine.backend import Detector, TorchDetector

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
    """A COCO ground-truth dict for any parsed dataset; category ids are the source's (COCO) or ``label + 1``.

    A record's ``ignore_boxes`` (VOC difficult objects) become ``iscrowd`` regions, which COCO evaluation ignores:
    a detection on one is neither a true nor a false positive, and missing one costs no recall.
    """
    cat_ids = index.category_ids or list(range(1, index.num_classes + 1))
    images: list[dict] = []
    anns: list[dict] = []
    for rec in index.records:
        w, h = rec.stated_size or image_file_size(rec.path)  # a stated 0 (some exporters write it) is no size
        images.append({"id": int(rec.image_id), "width": int(w), "height": int(h), "file_name": rec.path.name})
        objects = [(b, lab, 0) for b, lab in zip(rec.boxes.tolist(), rec.labels.tolist())]
        objects += [(b, lab, 1) for b, lab in zip(rec.ignore_boxes.tolist(), rec.ignore_labels.tolist())]
        for box, label, crowd in objects:
            bw, bh = box[2] - box[0], box[3] - box[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": int(rec.image_id),
                    "category_id": cat_ids[label],
                    "bbox": [box[0], box[1], bw, bh],
                    "area": bw * bh,
                    "iscrowd": crowd,
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
        note = f"ground truth: {index.source} as given (crowds and areas from the file)"
        ids = {r.image_id for r in index.records}
        kept = [im for im in gt["images"] if isinstance(im, dict) and im.get("id") in ids]
        if len(kept) < len(gt["images"]):  # images the loader dropped (missing file, repeated id) are not scored
            gt["images"] = kept
            gt["annotations"] = [a for a in gt["annotations"] if isinstance(a, dict) and a.get("image_id") in ids]
            note += f"; {len(ids)} of its images evaluated (the others were dropped while loading)"
        return gt, note
    ignored = sum(len(r.ignore_labels) for r in index.records)
    crowds = f"{ignored} difficult objects ignored" if ignored else "no crowds"
    return coco_gt_from_index(index), f"ground truth: rebuilt from the {index.format} boxes ({crowds}, box areas)"


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
def _decoder_depth(detector: Detector, depth: int | None) -> Iterator[None]:
    """Run with ``depth`` decoder layers, then restore the detector's own depth."""
    saved = detector.decoder_depth
    detector.set_decoder_depth(depth)
    try:
        yield
    finally:
        if depth is not None and saved is not None:
            detector.set_decoder_depth(saved)


def iter_detections(
    detector: Detector, loader: Iterable, max_det: int = 300
) -> Iterator[tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]]:
    """``(detections, targets)`` per batch of ``loader`` (batches of ``(images, targets)``)."""
    for images, targets in loader:
        sizes = torch.stack([t["orig_size"] for t in targets])
        yield detector.detect(images, sizes, max_det), targets


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    loader: Iterable,
    evaluator: CocoEvaluator,
    device: torch.device | str = "cpu",
    decoder_depth: int | None = None,
    max_det: int = 300,
) -> dict[str, Any]:
    """Run ``model`` (an RTDETR module, e.g. during training) over ``loader`` and evaluate the top ``max_det``
    detections per image; restores the model's mode and decoder depth afterwards."""
    was_training = model.training
    model.eval()
    evaluator.reset()
    try:
        detector = TorchDetector(model, device)
        with _decoder_depth(detector, decoder_depth):
            for dets, targets in iter_detections(detector, loader, max_det):
                evaluator.update([int(t["image_id"]) for t in targets], dets)
        return evaluator.evaluate()
    finally:
        model.train(was_training)


@torch.no_grad()
def validate(
    detector: Detector,
    index: DatasetIndex,
    image_size: tuple[int, int],
    batch_size: int = 8,
    decoder_depth: int | None = None,
    conf: float = 0.5,
    save_dir: str | None = None,
    workers: int = 0,
    class_names: list[str] | None = None,
    shrink_above: float | None = None,
) -> dict[str, Any]:
    """Evaluate ``detector`` (any backend) on a parsed dataset: COCO stats, per-class AP/AP50,
    precision/recall/F1 and a confusion matrix at score ``conf``; with ``save_dir`` also the report files (see
    :func:`rtdetr.engine.metrics.save_report`). Images are loaded as training loaded them: ``shrink_above`` is the
    run's ``data.shrink_above`` (None: the default).
    """
    from torch.utils.data import DataLoader

    from rtdetr.config import DataConfig
    from rtdetr.data import BatchCollator, DetectionDataset, load_cover
    from rtdetr.data.transforms import build_val_transforms
    from rtdetr.engine.metrics import ThresholdMetrics, save_report

    names = class_names or index.class_names
    num_classes = detector.num_classes or len(names)
    if num_classes != index.num_classes:
        raise ValueError(f"the model predicts {num_classes} classes but {index.source} has {index.num_classes}")
    cat_ids = index.category_ids or list(range(1, index.num_classes + 1))
    gt, gt_note = ground_truth_for(index)
    evaluator = CocoEvaluator(gt, label_to_category=cat_ids)
    loader = DataLoader(
        DetectionDataset(
            index,
            build_val_transforms(image_size),
            load_cover=load_cover(image_size, DataConfig.shrink_above if shrink_above is None else shrink_above),
        ),
        batch_size,
        shuffle=False,
        collate_fn=BatchCollator(),
        num_workers=workers,
    )
    thresholds = ThresholdMetrics(num_classes, conf)
    records = {int(r.image_id): r for r in index.records}
    with _decoder_depth(detector, decoder_depth):
        for dets, targets in iter_detections(detector, loader):
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
                    rec.ignore_boxes,
                    rec.ignore_labels,
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
