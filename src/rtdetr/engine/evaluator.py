"""COCO box metrics through faster-coco-eval (or pycocotools): the 12 standard numbers and per-class AP."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rtdetr.data.records import DatasetIndex

__all__ = ["STAT_NAMES", "CocoEvaluator", "coco_gt_from_index"]

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
            return {"stats": dict.fromkeys(STAT_NAMES, 0.0), "per_class_ap": {}, "backend": name}
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
        per_class = {}
        for k, cat in enumerate(ev.params.catIds):
            p = precision[:, :, k, 0, -1]
            per_class[int(cat)] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
        return {"stats": stats, "per_class_ap": per_class, "backend": name}

    def _select_backend(self) -> tuple[Any, Any, str]:
        if self.backend == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            return COCO, COCOeval, "pycocotools"
        if self.backend == "faster_coco_eval":
            from faster_coco_eval import COCO, COCOeval_faster

            return COCO, COCOeval_faster, "faster_coco_eval"
        return _backend()


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
    depth = getattr(model, "decoder_depth", None)
    if decoder_depth is not None:
        model.set_decoder_depth(decoder_depth)  # type: ignore[operator]
    evaluator.reset()
    try:
        for images, targets in loader:
            out = model(images.to(device))
            sizes = torch.stack([t["orig_size"] for t in targets]).to(device)
            dets = postprocessor(out, sizes)
            evaluator.update([int(t["image_id"]) for t in targets], dets)
        return evaluator.evaluate()
    finally:
        if decoder_depth is not None and depth is not None:
            model.set_decoder_depth(depth)  # type: ignore[operator]
        model.train(was_training)
