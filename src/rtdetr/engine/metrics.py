"""Detection metrics beyond the COCO summary: per-class precision/recall/F1 at a score threshold, a confusion
matrix, PR curves and per-class AP, written as CSV/JSON/PNG."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["ThresholdMetrics", "match_detections", "save_report"]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes ``[N, 4]`` x ``[M, 4]``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def match_detections(
    det_boxes: np.ndarray,
    det_labels: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    iou_threshold: float = 0.5,
) -> list[tuple[int, int]]:
    """One-to-one (gt index, det index) pairs with IoU >= threshold, regardless of class (maximum-IoU assignment).

    Class agreement is judged by the caller, which is what a confusion matrix needs.
    """
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return []
    iou = _iou(gt_boxes, det_boxes)
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= iou_threshold]


class ThresholdMetrics:
    """Accumulates a ``(C + 1) x (C + 1)`` confusion matrix (last row/column = background) at one score threshold.

    ``matrix[true, predicted]``: a missed object counts in ``[true, background]``, a false detection in
    ``[background, predicted]``.
    """

    def __init__(self, num_classes: int, conf: float = 0.5, iou_threshold: float = 0.5) -> None:
        self.num_classes, self.conf, self.iou_threshold = num_classes, conf, iou_threshold
        self.matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)

    def update(
        self,
        det_boxes: np.ndarray,
        det_labels: np.ndarray,
        det_scores: np.ndarray,
        gt_boxes: np.ndarray,
        gt_labels: np.ndarray,
        ignore_boxes: np.ndarray | None = None,
        ignore_labels: np.ndarray | None = None,
    ) -> None:
        """Count one image. Boxes are ``[N, 4]`` absolute xyxy; a detection left unmatched that overlaps an
        ``ignore_boxes`` object of its class (VOC difficult) at the IoU threshold is not counted at all."""
        keep = det_scores >= self.conf
        det_boxes, det_labels = det_boxes[keep], det_labels[keep]
        bg = self.num_classes
        pairs = match_detections(det_boxes, det_labels, gt_boxes, gt_labels, self.iou_threshold)
        matched_gt = {g for g, _ in pairs}
        matched_det = {d for _, d in pairs}
        if ignore_boxes is not None and ignore_labels is not None and len(ignore_labels):
            rest = [d for d in range(len(det_labels)) if d not in matched_det]
            if rest:  # every such detection, duplicates too, as the VOC devkit ignores them
                iou = _iou(ignore_boxes, det_boxes[rest])
                same = ignore_labels[:, None] == det_labels[rest][None, :]
                on_ignored = ((iou >= self.iou_threshold) & same).any(0)
                matched_det |= {d for d, hit in zip(rest, on_ignored) if hit}  # neither hit nor false positive
        for g, d in pairs:
            self.matrix[gt_labels[g], det_labels[d]] += 1
        for g in range(len(gt_labels)):
            if g not in matched_gt:
                self.matrix[gt_labels[g], bg] += 1
        for d in range(len(det_labels)):
            if d not in matched_det:
                self.matrix[bg, det_labels[d]] += 1

    def per_class(self) -> dict[str, np.ndarray]:
        """Precision, recall and F1 per class. Precision is 0 for a class with support but no detection at the
        threshold (as Ultralytics reports it); a class with neither support nor detection gets NaN (undefined)."""
        tp = np.diag(self.matrix)[:-1].astype(np.float64)
        fp = self.matrix[:, :-1].sum(0) - tp
        fn = self.matrix[:-1, :].sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), np.where(fn > 0, 0.0, np.nan))
            recall = tp / (tp + fn)
            f1 = 2 * precision * recall / (precision + recall)
        return {
            "precision": precision,
            "recall": recall,
            "f1": np.where(tp + fp + fn > 0, np.nan_to_num(f1, nan=0.0), np.nan),  # undefined like P and R
            "tp": tp,
            "fp": fp,
            "fn": fn,
        }

    def overall(self) -> dict[str, float]:
        pc = self.per_class()
        tp, fp, fn = pc["tp"].sum(), pc["fp"].sum(), pc["fn"].sum()
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return {
            "precision": float(p),
            "recall": float(r),
            "f1": float(2 * p * r / (p + r)) if p + r else 0.0,
            "conf": self.conf,
            "iou": self.iou_threshold,
        }


def _plot_confusion(matrix: np.ndarray, names: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [*names, "background"]
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * n + 2), max(4, 0.45 * n + 1.5)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90 if n > 8 else 45, ha="right" if n <= 8 else "center", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        str(matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("confusion matrix (row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_pr(precision: np.ndarray, names: Sequence[str], path: Path) -> None:
    """``precision``: COCOeval's ``[T, R, K, A, M]`` array; curves at IoU 0.5, all areas, 100 detections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recall = np.linspace(0, 1, precision.shape[1])
    fig, ax = plt.subplots(figsize=(7, 5))
    curves = []
    for k, name in enumerate(names):
        p = precision[0, :, k, 0, -1]
        if (p > -1).any():
            p = np.where(p < 0, 0, p)
            curves.append(p)
            if len(names) <= 20:
                ax.plot(recall, p, lw=1, label=f"{name} {p.mean():.3f}")
    if curves:
        mean = np.mean(curves, 0)
        ax.plot(recall, mean, lw=3, color="black", label=f"all classes {mean.mean():.3f} AP50")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if curves:  # no class with ground truth: no curve, and no legend (matplotlib warns of an empty one)
        ax.legend(fontsize=7, loc="lower left")
    ax.set_title("precision-recall at IoU 0.5")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_report(
    save_dir: Path,
    names: Sequence[str],
    category_ids: Sequence[int],
    coco: dict[str, Any],
    thresholds: ThresholdMetrics,
    results: list[dict[str, Any]],
) -> dict[str, str]:
    """Write ``metrics.json``, ``per_class.csv``, ``predictions.json`` (COCO results), ``pr_curve.png`` and
    ``confusion_matrix.png``; returns the file paths by name."""
    save_dir.mkdir(parents=True, exist_ok=True)
    pc = thresholds.per_class()
    files = {}
    with (save_dir / "per_class.csv").open("w", newline="") as f:
        w = csv.writer(f)
        # label: the 0-based id predict returns; category_id: the dataset's own id (COCO json, or label + 1)
        w.writerow(["label", "class", "category_id", "AP", "AP50", "precision", "recall", "f1", "tp", "fp", "fn"])
        for k, (name, cat) in enumerate(zip(names, category_ids)):
            w.writerow(
                [
                    k,
                    name,
                    cat,
                    _r(coco["per_class_ap"].get(cat)),
                    _r(coco.get("per_class_ap50", {}).get(cat)),
                    _r(pc["precision"][k]),
                    _r(pc["recall"][k]),
                    _r(pc["f1"][k]),
                    int(pc["tp"][k]),
                    int(pc["fp"][k]),
                    int(pc["fn"][k]),
                ]
            )
    files["per_class"] = str(save_dir / "per_class.csv")
    (save_dir / "predictions.json").write_text(json.dumps(results))
    files["predictions"] = str(save_dir / "predictions.json")
    summary = {"stats": coco["stats"], "threshold": thresholds.overall(), "backend": coco.get("backend")}
    (save_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    files["metrics"] = str(save_dir / "metrics.json")
    try:
        _plot_confusion(thresholds.matrix, names, save_dir / "confusion_matrix.png")
        files["confusion_matrix"] = str(save_dir / "confusion_matrix.png")
        if coco.get("precision") is not None:
            _plot_pr(np.asarray(coco["precision"]), names, save_dir / "pr_curve.png")
            files["pr_curve"] = str(save_dir / "pr_curve.png")
    except ImportError:
        pass
    return files


def _r(v: Any) -> Any:
    if v is None:
        return ""
    v = float(v)
    return "" if np.isnan(v) else round(v, 4)
