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


def _pycocotools_stats(gt_path: Path, dets: list[dict]) -> list[float]:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return [float(v) for v in ev.stats]


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_coco_json_ground_truth_is_the_file_itself(shared_datasets: Path, backend: str) -> None:
    """A COCO json is evaluated as pycocotools evaluates it: crowds are ignore regions and the size buckets use
    the annotations' own (segmentation) areas. The rebuilt ground truth (what YOLO/VOC sets get) differs on this
    file, so the test can tell the two apart."""
    from rtdetr.data.coco import load_coco
    from rtdetr.engine.evaluator import coco_gt_from_index, ground_truth_for

    ref = shared_datasets / "coco_eval_reference"
    gt_path = ref / "instances_val2014_100.json"
    raw = json.loads(gt_path.read_text())
    assert any(a["iscrowd"] for a in raw["annotations"])
    assert any(abs(a["area"] - a["bbox"][2] * a["bbox"][3]) > 1 for a in raw["annotations"])
    dets = json.loads((ref / "instances_val2014_fakebbox100_results.json").read_text())
    index = load_coco(gt_path)
    gt, note = ground_truth_for(index)
    assert "as given" in note
    ours = list(CocoEvaluator(gt, backend=backend).evaluate(dets)["stats"].values())
    theirs = _pycocotools_stats(gt_path, dets)
    assert ours == pytest.approx(theirs, abs=1e-9)
    rebuilt = list(CocoEvaluator(coco_gt_from_index(index), backend=backend).evaluate(dets)["stats"].values())
    assert max(abs(a - b) for a, b in zip(rebuilt, theirs)) > 1e-3  # what validation computed before


class _FixedDetector:
    """A stand-in backend: returns given detections, batch after batch, in dataset order."""

    decoder_depth = None

    def __init__(self, per_image: list[dict[str, torch.Tensor]], num_classes: int) -> None:
        self.per_image, self.num_classes = list(per_image), num_classes

    def set_decoder_depth(self, depth: int | None) -> None:
        assert depth is None

    def detect(self, images: torch.Tensor, sizes: torch.Tensor, max_det: int = 300) -> list[dict[str, torch.Tensor]]:
        out, self.per_image = self.per_image[: len(images)], self.per_image[len(images) :]
        return out


def test_validate_on_coco_json_equals_pycocotools(tmp_path: Path) -> None:
    """``rtdetr val``'s evaluation path on a COCO json with crowd annotations and segmentation areas unlike the
    box areas gives pycocotools' numbers on that json."""
    from PIL import Image

    from rtdetr.data.coco import load_coco
    from rtdetr.engine.evaluator import validate

    rng = np.random.default_rng(0)
    images, anns, per_image = [], [], []
    for i in range(6):
        name = f"{i}.jpg"
        Image.new("RGB", (96, 64), (i * 30, 80, 120)).save(tmp_path / name)
        images.append({"id": 100 + i, "file_name": name, "width": 96, "height": 64})
        boxes, labels, scores = [], [], []
        for j in range(4):
            x, y = rng.uniform(0, 60), rng.uniform(0, 30)
            w, h = rng.uniform(6, 34), rng.uniform(6, 32)
            cat = [3, 7][j % 2]
            crowd = int(j == 3 and i % 2 == 0)
            # segmentation areas: between 0.3 and 0.9 of the box, so some objects change size bucket
            area = float(w * h * rng.uniform(0.3, 0.9))
            anns.append(
                dict(id=len(anns) + 1, image_id=100 + i, category_id=cat, bbox=[x, y, w, h], area=area, iscrowd=crowd)
            )
            jit = rng.normal(0, 2, 4)
            boxes.append([x + jit[0], y + jit[1], x + w + jit[2], y + h + jit[3]])
            labels.append(j % 2)
            scores.append(float(rng.uniform(0.2, 1.0)))
        boxes.append([1.0, 1.0, 20.0, 20.0]), labels.append(0), scores.append(0.95)  # a false positive
        per_image.append({"boxes": torch.tensor(boxes), "labels": torch.tensor(labels), "scores": torch.tensor(scores)})
    gt_path = tmp_path / "instances_val.json"
    cats = [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]
    gt_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))

    index = load_coco(gt_path, tmp_path)
    res = validate(_FixedDetector(per_image, 2), index, (64, 64), batch_size=4)
    assert "as given" in res["ground_truth"]
    dets = [
        {
            "image_id": 100 + i,
            "category_id": [3, 7][int(lb)],
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "score": s,
        }
        for i, d in enumerate(per_image)
        for b, lb, s in zip(d["boxes"].tolist(), d["labels"].tolist(), d["scores"].tolist())
    ]
    theirs = _pycocotools_stats(gt_path, dets)
    assert list(res["stats"].values()) == pytest.approx(theirs, abs=1e-9)


def test_precision_without_detections_is_zero_not_nan() -> None:
    """A class with objects but nothing above the threshold has precision 0 (val used to print nan)."""
    m = ThresholdMetrics(num_classes=3, conf=0.5)
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    m.update(gt[:1], np.array([0]), np.array([0.9]), gt, np.array([0, 1]))
    pc = m.per_class()
    assert pc["precision"][0] == 1.0 and pc["precision"][1] == 0.0 and pc["recall"][1] == 0.0
    assert np.isnan(pc["precision"][2])  # no objects and no detections: undefined
    # ... and so is its F1 (it printed 0.0000 beside nan precision and recall); a missed class's F1 is 0
    assert np.isnan(pc["f1"][2]) and pc["f1"][1] == 0.0 and pc["f1"][0] == 1.0


def test_voc_difficult_objects_are_ignored_as_pycocotools_would_without_them(tmp_path: Path) -> None:
    """VOC ``difficult`` objects are neither targets nor misses, and detections on them (duplicates too) are not
    false positives: the numbers equal pycocotools' on the set with those objects and detections removed.
    Scoring them as ordinary objects (what validation did before) gives other numbers."""
    from PIL import Image

    from rtdetr.data.voc import load_voc
    from rtdetr.engine.evaluator import validate

    rng = np.random.default_rng(1)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    images, anns, kept_dets, per_image = [], [], [], []
    for i in range(6):
        Image.new("RGB", (96, 64), (i * 30, 80, 120)).save(tmp_path / "JPEGImages" / f"{i}.jpg")
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 96, "height": 64})
        objects, boxes, labels, scores = "", [], [], []
        for j in range(4):
            x, y = float(rng.integers(0, 60)), float(rng.integers(0, 30))
            w, h = float(rng.integers(8, 34)), float(rng.integers(8, 32))
            difficult = int(j == 3 or (i == 0 and j == 2))
            objects += (
                f"<object><name>{'ab'[j % 2]}</name><difficult>{difficult}</difficult><bndbox><xmin>{x:g}</xmin>"
                f"<ymin>{y:g}</ymin><xmax>{x + w:g}</xmax><ymax>{y + h:g}</ymax></bndbox></object>"
            )
            score = float(rng.uniform(0.2, 1.0))
            if difficult:  # found on odd images, twice on two of them; scored below the rest, as COCO's maxDets
                if i % 2:  # (AR1) count detections on ignored objects too
                    for k in range(1 + (i % 4 == 1)):
                        boxes.append([x, y, x + w, y + h]), labels.append(j % 2), scores.append(0.15 - 0.05 * k)
                continue
            anns.append(dict(id=len(anns) + 1, image_id=i, category_id=j % 2 + 1, bbox=[x, y, w, h], area=w * h))
            anns[-1]["iscrowd"] = 0
            jit = rng.normal(0, 2, 4)
            boxes.append([x + jit[0], y + jit[1], x + w + jit[2], y + h + jit[3]]), labels.append(j % 2)
            scores.append(score)
            kept_dets.append((i, boxes[-1], j % 2, score))
        boxes.append([1.0, 1.0, 20.0, 20.0]), labels.append(0), scores.append(0.95)  # a false positive
        kept_dets.append((i, boxes[-1], 0, 0.95))
        per_image.append({"boxes": torch.tensor(boxes), "labels": torch.tensor(labels), "scores": torch.tensor(scores)})
        (tmp_path / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>96</width><height>64</height></size>"
            f"{objects}</annotation>"
        )
    index = load_voc(tmp_path, split=None)
    assert sum(len(r.labels) for r in index.records) == 17 and sum(len(r.ignore_labels) for r in index.records) == 7
    assert any("7 objects marked <difficult>1 in 6 files are ignored" in n for n in index.notes)
    res = validate(_FixedDetector(per_image, 2), index, (64, 64), batch_size=4, conf=0.1)
    assert "7 difficult objects ignored" in res["ground_truth"]

    gt_path = tmp_path / "without_difficult.json"
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    gt_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    dets = [
        {"image_id": i, "category_id": lb + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
        for i, b, lb, s in kept_dets
    ]
    theirs = _pycocotools_stats(gt_path, dets)
    assert list(res["stats"].values()) == pytest.approx(theirs, abs=1e-9)
    m = ThresholdMetrics(2, conf=0.1)
    for i in range(6):
        mine = [(b, lb, s) for k, b, lb, s in kept_dets if k == i]
        gt = [a for a in anns if a["image_id"] == i]
        m.update(
            np.array([b for b, _, _ in mine], dtype=np.float32),
            np.array([lb for _, lb, _ in mine]),
            np.array([s for _, _, s in mine]),
            np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                      for a in gt], dtype=np.float32),
            np.array([a["category_id"] - 1 for a in gt]),
        )  # fmt: skip
    assert res["threshold"] == pytest.approx(m.overall())

    for r in index.records:  # the old scoring: difficult objects as ordinary ones
        r.boxes, r.labels = np.concatenate([r.boxes, r.ignore_boxes]), np.concatenate([r.labels, r.ignore_labels])
        r.ignore_boxes, r.ignore_labels = r.ignore_boxes[:0], r.ignore_labels[:0]
    old = validate(_FixedDetector(per_image, 2), index, (64, 64), batch_size=4, conf=0.1)
    assert max(abs(old["stats"][k] - v) for k, v in res["stats"].items()) > 0.05
    assert old["threshold"]["recall"] < res["threshold"]["recall"] - 0.05


def test_threshold_metrics_ignore_only_same_class_detections() -> None:
    """Detections on an ignored (difficult) object of their own class are not counted, duplicates included; one
    of another class there is still a false positive, and a matched object still takes its detection."""
    m = ThresholdMetrics(num_classes=2, conf=0.5)
    gt, hard = np.array([[0, 0, 10, 10]], dtype=np.float32), np.array([[20, 20, 40, 40]], dtype=np.float32)
    dets = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [21, 20, 40, 41], [20, 20, 40, 40]], dtype=np.float32)
    m.update(dets, np.array([0, 1, 1, 0]), np.full(4, 0.9), gt, np.array([0]), hard, np.array([1]))
    assert m.matrix.tolist() == [[1, 0, 0], [0, 0, 0], [1, 0, 0]]  # the class-0 detection on the class-1 object


class _OracleDetector:
    """A stand-in backend that finds every object exactly: its detections are the ground truth normalised to the
    annotation's frame, scaled to the ``sizes`` it is given (what a perfect model's post-processor returns)."""

    decoder_depth = None

    def __init__(self, normalised: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> None:
        self.queue, self.num_classes = list(normalised), num_classes

    def set_decoder_depth(self, depth: int | None) -> None:
        assert depth is None

    def detect(self, images: torch.Tensor, sizes: torch.Tensor, max_det: int = 300) -> list[dict[str, torch.Tensor]]:
        out = []
        for size in sizes:
            boxes, labels = self.queue.pop(0)
            scale = size.to(torch.float32).repeat(2)
            out.append({"boxes": torch.from_numpy(boxes) * scale, "labels": torch.from_numpy(labels),
                        "scores": torch.ones(len(labels))})  # fmt: skip
        return out


@pytest.mark.parametrize("fmt", ["coco", "voc"])
def test_annotation_made_before_the_images_were_resized_scores_in_its_own_frame(tmp_path: Path, fmt: str) -> None:
    """A dataset whose json / xml states 200x100 while its images were later saved at 100x50 (a user shrinking
    the files): a perfect detector scores AP 1 (detections were scaled to the image, the ground truth is not)."""
    from PIL import Image

    from rtdetr.data import load_index
    from rtdetr.engine.evaluator import validate

    rng = np.random.default_rng(1)
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    images, anns, truth = [], [], []
    for i in range(4):
        Image.new("RGB", (100, 50), (40 * i, 90, 160)).save(tmp_path / "JPEGImages" / f"{i}.jpg")
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 200, "height": 100})
        boxes = []
        for j in range(3):
            x, y = rng.uniform(0, 120), rng.uniform(0, 50)
            w, h = rng.uniform(20, 70), rng.uniform(15, 45)
            boxes.append([x, y, x + w, y + h])
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1 + j % 2, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})  # fmt: skip
        labels = np.array([j % 2 for j in range(3)])
        truth.append((np.array(boxes, np.float32) / np.array([200, 100, 200, 100], np.float32), labels))
        objs = "".join(
            f"<object><name>{'ab'[lb]}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
            f"<ymax>{b[3]}</ymax></bndbox></object>"
            for b, lb in zip(boxes, labels)
        )
        (tmp_path / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>200</width><height>100</height></size>{objs}"
            "</annotation>"
        )
    if fmt == "coco":
        cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
        (tmp_path / "val.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
        index = load_index(tmp_path / "val.json", image_dir=tmp_path / "JPEGImages")
    else:
        (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
        (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("0\n1\n2\n3\n")
        index = load_index(tmp_path, split="val", class_names=["a", "b"])
    assert [(r.width, r.height) for r in index.records] == [(200, 100)] * 4
    order = [int(r.image_id) for r in index.records]
    res = validate(_OracleDetector([truth[k - 1 if fmt == "coco" else k] for k in order], 2), index, (64, 64))
    assert res["stats"]["AP"] == pytest.approx(1.0) and res["stats"]["AP50"] == pytest.approx(1.0)


def test_rebuilt_ground_truth_takes_a_stated_zero_size_from_the_file(tmp_path: Path) -> None:
    """Some exporters write ``"width": 0``: that states no size, and the image's own is used (it was written as 0)."""
    from PIL import Image

    from rtdetr.data.records import DatasetIndex, ImageRecord
    from rtdetr.engine.evaluator import coco_gt_from_index

    Image.new("RGB", (48, 32)).save(tmp_path / "a.png")
    box = np.array([[1, 2, 10, 12]], np.float32)
    rec = ImageRecord(tmp_path / "a.png", box, np.zeros(1, np.int64), 1, width=0, height=0)
    gt = coco_gt_from_index(DatasetIndex([rec], ["x"], "coco", "t.json"))
    assert (gt["images"][0]["width"], gt["images"][0]["height"]) == (48, 32)
