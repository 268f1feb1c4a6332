"""ONNX export of model + post-processor as one graph, with a parity check against PyTorch.

Graph: inputs ``images`` ``[N, 3, H, W]`` float32 in ``[0, 1]`` and ``orig_target_sizes`` ``[N, 2]`` int64
``(width, height)``, and an optional third, ``class_mask`` ``[1 or N, C]`` bool (default: every class; an
initializer that a caller may override, so a two-input caller runs as before): the top ``K`` are taken among the
classes it marks, as :meth:`rtdetr.models.PostProcessor.detect` takes them (``class_mask_input=False``: the
official two-input interface, without it, for loaders that take no input with a default). Outputs ``labels``
``[N, K]`` int64, ``boxes`` ``[N, K, 4]`` float32 xyxy pixels, ``scores`` ``[N, K]`` float32, sorted by score. The
batch axis is dynamic; the image size is fixed at export.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from rtdetr.models.postprocess import PostProcessor
from rtdetr.models.rtdetr import RTDETR

__all__ = ["BAKED_KEYS", "DeployModel", "ExportReport", "compare_detections", "export_onnx", "set_metadata"]

#: The graph's optional input: the classes its top-k is taken among (``[1 or N, C]`` bool, default all).
CLASS_MASK = "class_mask"

#: What an export fixes in the graph and records in its metadata (and the OpenVINO sidecar), as integers.
BAKED_KEYS = ("decoder_depth", "decoder_layers", "max_det")

log = logging.getLogger("rtdetr")


class DeployModel(nn.Module):
    """``(images, orig_target_sizes[, class_mask]) -> (labels, boxes, scores)``: the fused model and the
    post-processor (``class_mask`` ``[C]`` or ``[1 or N, C]`` bool: the top-k among those classes)."""

    def __init__(self, model: RTDETR, postprocessor: PostProcessor) -> None:
        super().__init__()
        self.model = model
        self.postprocessor = postprocessor

    def forward(
        self, images: Tensor, orig_target_sizes: Tensor, class_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        return self.postprocessor.detect(self.model(images), orig_target_sizes, class_mask)


@dataclass
class ExportReport:
    path: str
    opset: int
    image_size: tuple[int, int]
    num_top_queries: int
    max_score_diff: float | None = None
    max_box_diff_px: float | None = None
    label_agreement: float | None = None
    simplified: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_detections(
    a: tuple[np.ndarray, np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray, np.ndarray], score_floor: float = 0.0
) -> tuple[float, float, float]:
    """Compare two ``(labels, boxes, scores)`` batches as sets per image (top-k ties may order equal-scored
    detections differently): pair detections by an optimal assignment on score and box distance, then report
    ``(max |score diff|, max |box diff| in pixels, fraction of pairs with the same label)``. Detections scoring
    below ``score_floor`` in both are ignored."""
    worst_s = worst_b = 0.0
    same = total = 0
    for la, ba, sa, lb, bb, sb in zip(*a, *b):
        keep_a, keep_b = sa >= score_floor, sb >= score_floor
        if not keep_a.any() and not keep_b.any():
            continue
        la, ba, sa = la[keep_a | keep_b], ba[keep_a | keep_b], sa[keep_a | keep_b]
        lb, bb, sb = lb[keep_a | keep_b], bb[keep_a | keep_b], sb[keep_a | keep_b]
        scale = max(1.0, float(np.abs(np.concatenate([ba.ravel(), bb.ravel()])).max()))
        cost = (
            np.abs(sa[:, None] - sb[None])
            + np.abs(ba[:, None] - bb[None]).max(-1) / scale
            + (la[:, None] != lb[None]) * 10.0
        )
        rows, cols = linear_sum_assignment(cost)
        worst_s = max(worst_s, float(np.abs(sa[rows] - sb[cols]).max()))
        worst_b = max(worst_b, float(np.abs(ba[rows] - bb[cols]).max()))
        same += int((la[rows] == lb[cols]).sum())
        total += len(rows)
    return worst_s, worst_b, same / total if total else 1.0


def export_onnx(
    model: RTDETR,
    path: str | Path,
    image_size: tuple[int, int] | None = None,
    opset: int = 17,
    num_top_queries: int = 300,
    dynamic_batch: bool = True,
    check: bool = True,
    simplify: bool = False,
    decoder_depth: int | None = None,
    check_inputs: Tensor | None = None,
    class_names: list[str] | None = None,
    run_data: dict[str, Any] | None = None,
    class_mask_input: bool = True,
) -> ExportReport:
    """Export ``model`` (a copy is fused with ``deploy()``; the original is untouched) with its post-processor.

    Args:
        image_size: ``(height, width)``; default the model's ``eval_spatial_size`` or 640x640.
        opset: ONNX opset (>= 16 for GridSample; 17 default).
        check: run the ONNX checker and compare ONNX Runtime with PyTorch on ``check_inputs`` (default: two
            random images); differences are reported, and a label disagreement above 1% raises.
        simplify: run onnxslim (or onnxsim) when installed.
        decoder_depth: bake a truncated decoder into the graph.
        run_data: the data settings (a ``DataConfig`` dict) of the training run that wrote the checkpoint,
            recorded in the metadata (``run_data``) so that evaluating the graph without data uses that run's
            validation set.
        class_mask_input: give the graph the optional ``class_mask`` input (a class filter's top-k over every
            query). False: exactly the official interface, ``(images, orig_target_sizes)``, for deploy tools
            written for the official export's exact inputs, with no input default for a loader to warn about or
            refuse; a class filter then keeps those classes among the graph's ``num_top_queries`` detections.
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the 'onnx' package (pip install 'rtdetr[onnx]')") from None
    if opset < 16:
        raise ValueError(f"opset {opset} lacks GridSample; use 16 or newer")
    cfg = model.config
    if image_size is None:
        image_size = tuple(cfg.eval_spatial_size) if cfg and cfg.eval_spatial_size else (640, 640)  # type: ignore[assignment]
    assert image_size is not None
    h, w = int(image_size[0]), int(image_size[1])
    fused = copy.deepcopy(model).cpu().eval()
    if decoder_depth is not None:
        fused.set_decoder_depth(decoder_depth)
    if not fused.deployed:
        fused.deploy()
    num_classes = cfg.num_classes if cfg else fused.decoder.num_classes
    wrapper = DeployModel(fused, PostProcessor(num_classes, num_top_queries)).eval()
    images = torch.rand(2, 3, h, w)
    sizes = torch.tensor([[w, h], [w, h]], dtype=torch.int64)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    every_class = torch.ones(1, num_classes, dtype=torch.bool)
    inputs: tuple[Tensor, ...] = (images, sizes, every_class) if class_mask_input else (images, sizes)
    names = ["images", "orig_target_sizes", CLASS_MASK][: len(inputs)]
    axes: dict[str, dict[int, str]] = {CLASS_MASK: {0: "M"}} if class_mask_input else {}  # one row, or one per image
    if dynamic_batch:
        axes |= {k: {0: "N"} for k in ("images", "orig_target_sizes", "labels", "boxes", "scores")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python ints taken from shapes (sizes are fixed)
        torch.onnx.export(
            wrapper,
            inputs,
            str(out),
            input_names=names,
            output_names=["labels", "boxes", "scores"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    report = ExportReport(str(out), opset, (h, w), num_top_queries)
    meta = {
        "producer": "rtdetr",
        "image_size": f"{h},{w}",
        "num_classes": str(num_classes),
        "class_names": json.dumps(class_names or [str(i) for i in range(num_classes)]),
        "variant": cfg.name if cfg else "",
        "precision": "fp32",  # the int8 graph says int8 (quantize_onnx_int8): runtimes read it without a scan
        # BAKED_KEYS: what `rtdetr info` reports as fixed ("runs 1 of 3 layers", "at most 300 per image")
        "decoder_depth": str(fused.decoder_depth),
        "decoder_layers": str(fused.num_decoder_layers),
        "max_det": str(num_top_queries),
    }
    if run_data:  # the training run's data settings: `rtdetr val best.onnx` finds its validation set
        meta["run_data"] = json.dumps(run_data)
    set_metadata(out, meta, defaults={CLASS_MASK: every_class.numpy()} if class_mask_input else None)
    if simplify:
        report.simplified = _simplify(out)
    if check:
        onnx.checker.check_model(str(out))
        x = check_inputs if check_inputs is not None else torch.rand(2, 3, h, w)
        s = torch.tensor([[w, h]] * x.shape[0], dtype=torch.int64)
        from rtdetr.export.runtime import OnnxRuntimeDetector

        graph = OnnxRuntimeDetector(out)
        # every class (the input's default), then a class filter: each image half the classes (class 0 always)
        half = (torch.arange(num_classes) + torch.arange(x.shape[0])[:, None]) % 2 == 0
        half[:, 0] = True
        found = []
        for mask in (None, half) if class_mask_input else (None,):
            with torch.no_grad():
                ref = tuple(t.numpy() for t in wrapper(x, s, mask))
            got = graph.run(x.numpy(), s.numpy(), None if mask is None else mask.numpy())
            found.append(compare_detections(ref, got, score_floor=float(np.finfo(np.float32).tiny)))
        report.max_score_diff, report.max_box_diff_px = (max(f[i] for f in found) for i in (0, 1))
        report.label_agreement = min(f[2] for f in found)
        log.info(
            "ONNX parity: max |score diff| %.2e, max |box diff| %.2e px, label agreement %.3f",
            report.max_score_diff,
            report.max_box_diff_px,
            report.label_agreement,
        )
        if report.label_agreement < 0.99:
            raise RuntimeError(
                f"{out}: ONNX Runtime disagrees with PyTorch on {1 - report.label_agreement:.1%} of "
                "labels; the export is not faithful"
            )
    return report


def set_metadata(path: str | Path, values: dict[str, str], defaults: dict[str, np.ndarray] | None = None) -> None:
    """Write ``values`` into the ONNX file's metadata (``metadata_props``), replacing keys already there; and
    give the graph inputs named in ``defaults`` these values (an initializer of the input's name: ONNX Runtime
    uses it where the caller feeds nothing for that input)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    for k, v in [*kept, *values.items()]:
        proto.metadata_props.add(key=k, value=v)
    for name, value in (defaults or {}).items():
        if name not in {i.name for i in proto.graph.input}:
            raise ValueError(f"{path}: the graph has no input {name!r} to give a default")
        proto.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    onnx.save(proto, str(path))


def _simplify(path: Path) -> bool:
    import onnx

    try:
        import onnxslim

        model = onnxslim.slim(str(path))
        onnx.save(model, str(path))
        return True
    except ImportError:
        pass
    try:
        from onnxsim import simplify

        model, ok = simplify(onnx.load(str(path)))
        if ok:
            onnx.save(model, str(path))
        return bool(ok)
    except ImportError:
        log.warning("simplify requested but neither onnxslim nor onnxsim is installed; exported as is")
        return False
