import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rtdetr.engine.evaluator import CocoEvaluator
from rtdetr.engine.metrics import ThresholdMetrics


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_reproduces_reference_stats(shared_datasets: Path, backend: str) -> None:
    ref = shared_datasets / "coco_eval_reference"
    expected = json.loads((ref / "expected_stats.json").read_text())["val2014_fake100"]["bbox"]["stats"]
    gt = json.loads((ref / "instances_val2014_100.json").read_text())
    dt = json.loads((ref / "instances_val2014_fakebbox100_results.json").read_text())
    stats = CocoEvaluator(gt, backend=backend).evaluate(dt)["stats"]
    assert stats["AP"] == pytest.approx(0.5045807, abs=1e-7)
    names = [
        "AP",
        "AP50",
        "AP75",
        "AP_small",
        "AP_medium",
        "AP_large",
        "AR1",
        "AR10",
        "AR100",
        "AR_small",
        "AR_medium",
        "AR_large",
    ]
    for ours, theirs in zip(stats.values(), names):
        assert ours == pytest.approx(expected[theirs], abs=1e-12), theirs


def test_update_converts_to_coco_results() -> None:
    gt = {
        "images": [{"id": 5, "width": 100, "height": 100}],
        "categories": [{"id": 3, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 3, "bbox": [10, 10, 20, 30], "area": 600, "iscrowd": 0}
        ],
    }
    ev = CocoEvaluator(gt)
    ev.update(
        [5],
        [
            {
                "boxes": torch.tensor([[10.0, 10.0, 30.0, 40.0]]),
                "scores": torch.tensor([0.9]),
                "labels": torch.tensor([0]),
            }
        ],
    )
    assert ev.results == [
        {"image_id": 5, "category_id": 3, "bbox": [10.0, 10.0, 20.0, 30.0], "score": pytest.approx(0.9)}
    ]
    assert ev.evaluate()["stats"]["AP"] == pytest.approx(1.0)
    ev.reset()
    assert ev.evaluate()["stats"]["AP"] == 0.0  # no detections at all


def test_threshold_metrics_confusion_matrix() -> None:
    m = ThresholdMetrics(num_classes=2, conf=0.5)
    gt_boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], dtype=np.float32)
    gt_labels = np.array([0, 1, 1])
    det_boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 31], [60, 60, 70, 70], [40, 40, 50, 50]], dtype=np.float32)
    det_labels = np.array([0, 0, 1, 1])
    det_scores = np.array([0.9, 0.8, 0.7, 0.3])  # the last (a true positive) is below the threshold
    m.update(det_boxes, det_labels, det_scores, gt_boxes, gt_labels)
    # rows: true 0, 1, background; columns: predicted 0, 1, background
    assert m.matrix.tolist() == [[1, 0, 0], [1, 0, 1], [0, 1, 0]]
    pc = m.per_class()
    assert pc["precision"][0] == pytest.approx(0.5) and pc["recall"][0] == pytest.approx(1.0)
    assert pc["recall"][1] == 0.0
    assert m.overall()["precision"] == pytest.approx(1 / 3)
