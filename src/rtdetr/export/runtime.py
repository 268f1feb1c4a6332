"""Running an exported ONNX graph with ONNX Runtime, behind the same interface as the PyTorch model."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rtdetr.engine.hardware import cpu_info
from rtdetr.export.onnx import CLASS_MASK
from rtdetr.models.postprocess import ClassFilter, class_mask

__all__ = ["OnnxRuntimeDetector", "OpenVinoDetector", "recorded_ints"]


def _det(labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> dict[str, Tensor]:
    """One image's runtime outputs -> the PostProcessor's dict."""
    return {k: torch.from_numpy(np.asarray(v)) for k, v in (("labels", labels), ("boxes", boxes), ("scores", scores))}


def recorded_ints(meta: Mapping[str, Any], *keys: str) -> tuple[int | None, ...]:
    """``meta``'s values for ``keys`` as ints (ONNX metadata holds strings), None where absent."""
    return tuple(int(meta[k]) if meta.get(k) is not None else None for k in keys)


def _openvino_reason(e: Exception) -> str:
    """The reason in an OpenVINO exception, without its source-location lines ("Exception from core.cpp:84:")."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '"))]
    return (said or lines or [type(e).__name__])[-1]


def _feed(images: np.ndarray, sizes: np.ndarray, class_mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """A graph's inputs by name (``class_mask`` only where given)."""
    feed: dict[str, np.ndarray] = {
        "images": np.ascontiguousarray(images, dtype=np.float32),
        "orig_target_sizes": np.ascontiguousarray(sizes, dtype=np.int64),
    }
    if class_mask is not None:
        feed[CLASS_MASK] = np.ascontiguousarray(class_mask, dtype=bool)
    return feed


def _dict_or_none(value: object) -> dict | None:
    """``value`` where it is a non-empty dict (a graph's recorded run data settings), else None."""
    return value if isinstance(value, dict) and value else None


class _GraphDetector(ABC):
    """An exported graph (post-processing included) behind :class:`rtdetr.engine.backend.Detector`: ``infer``
    runs the graph, ``postprocess`` unpacks it. Precision, memory layout, decoder depth and the number of
    detections are fixed at export."""

    kind = "graph"
    precision = "fp32"
    precision_reason = "fixed at export"
    channels_last = False
    exported = True
    decoder_layers: int | None = None
    """The decoder layers of the exported model, as its export recorded them (None: not recorded)."""
    decoder_depth: int | None = None
    """The decoder layers the graph runs (baked in at export; None: not recorded)."""
    class_names: list[str] | None
    image_size: tuple[int, int] | None
    class_input: int | None = None
    """``C`` of the graph's ``class_mask`` input, which takes a class filter's top-k inside the graph as the
    PyTorch model does (None: a graph exported without it, whose filter keeps those classes among its detections)."""
    run_data: dict | None = None
    """The data settings (``DataConfig`` as a dict) of the training run whose checkpoint was exported, where the
    export recorded them: ``val()`` without data evaluates on that run's validation set, as for the checkpoint."""

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names else None

    @abstractmethod
    def run(
        self, images: np.ndarray, sizes: np.ndarray, class_mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(labels [N, K], boxes [N, K, 4] xyxy pixels, scores [N, K])`` for images ``[N, 3, H, W]``, the top
        ``K`` among the classes ``class_mask`` (``[1 or N, C]`` bool; None: every class) marks, where the graph
        has that input (:attr:`class_input`)."""

    def set_decoder_depth(self, depth: int | None) -> None:
        """Accept ``depth`` only where it is the one baked in (None: the graph's own)."""
        if depth is None or depth == self.decoder_depth:
            return
        n = self.decoder_depth
        runs = f"this graph runs {n} decoder layer{'s' * (n != 1)}; " if n else ""
        raise ValueError(
            f"{runs}the decoder depth of an exported graph is fixed at export (rtdetr export --decoder-depth {depth})"
        )

    def infer(self, images: Tensor, sizes: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.run(images.cpu().numpy(), sizes.cpu().numpy())

    def postprocess(
        self,
        raw: tuple[np.ndarray, np.ndarray, np.ndarray],
        sizes: Tensor,
        max_det: int = 300,
        classes: ClassFilter = None,
    ) -> list[dict[str, Tensor]]:
        """The graph's detections cut to ``max_det``; with ``classes`` (ids, or one entry per image), those of
        these classes (:meth:`detect` gives them to a graph with a ``class_mask`` input, whose top-k then holds
        only them; an older graph's are its detections of these classes)."""
        labels, boxes, scores = raw
        mask = None
        if classes is not None:  # (the class count reaches every label the graph gave)
            mask = class_mask(classes, max(self.num_classes or 0, int(labels.max(initial=-1)) + 1), len(labels))
        if mask is None:
            return [
                _det(lb, bx, sc) for lb, bx, sc in zip(labels[:, :max_det], boxes[:, :max_det], scores[:, :max_det])
            ]
        chosen = mask.numpy()
        keep = chosen[labels] if chosen.ndim == 1 else np.take_along_axis(chosen, labels, axis=1)
        kept = zip(labels, boxes, scores, keep)
        return [_det(lb[k][:max_det], bx[k][:max_det], sc[k][:max_det]) for lb, bx, sc, k in kept]

    def detect(
        self, images: Tensor, sizes: Tensor, max_det: int = 300, classes: ClassFilter = None
    ) -> list[dict[str, Tensor]]:
        """Same output as :class:`rtdetr.models.PostProcessor`: per image ``labels``, ``boxes``, ``scores``; with
        ``classes``, the best of those classes over every query where the graph takes a class mask."""
        mask = class_mask(classes, self.class_input, len(images)) if classes is not None and self.class_input else None
        raw = self.run(
            images.cpu().numpy(), sizes.cpu().numpy(), None if mask is None else mask.view(-1, mask.shape[-1]).numpy()
        )
        return self.postprocess(raw, sizes, max_det, classes)

    def synchronize(self) -> None:  # noqa: B027 (graphs run synchronously on the CPU: nothing to wait for)
        return None


class OnnxRuntimeDetector(_GraphDetector):
    """ONNX Runtime: ``(images [N, 3, H, W] float32, sizes [N, 2] int64 (w, h)) -> (labels, boxes, scores)``.

    Args:
        path: ONNX file exported by :func:`rtdetr.export.onnx.export_onnx`.
        threads: intra-op threads (None = ONNX Runtime's default).
        providers: execution providers (default CPU).
    """

    kind = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("ONNX Runtime inference needs 'onnxruntime' (pip install 'rtdetr[onnx]')") from None
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such ONNX file")
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: the class_mask input's default is an initializer by design,
        # which ONNX Runtime warns about on every load ("Initializer class_mask appears in graph inputs")
        try:
            self.session = ort.InferenceSession(str(p), opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for invalid models
            raise RuntimeError(f"{p}: ONNX Runtime cannot load this model ({e})") from None
        shape = self.session.get_inputs()[0].shape
        inputs = [*self.session.get_inputs(), *self.session.get_overridable_initializers()]
        mask_shape = next((i.shape for i in inputs if i.name == CLASS_MASK), None)
        self.class_input = int(mask_shape[-1]) if mask_shape and isinstance(mask_shape[-1], int) else None
        self.image_size = (int(shape[2]), int(shape[3])) if all(isinstance(d, int) for d in shape[2:]) else None
        self.path = p
        meta = self.session.get_modelmeta().custom_metadata_map
        self.class_names = json.loads(meta["class_names"]) if "class_names" in meta else None
        self.run_data = _dict_or_none(json.loads(meta["run_data"])) if "run_data" in meta else None
        self.decoder_depth, self.decoder_layers = recorded_ints(meta, "decoder_depth", "decoder_layers")
        precision = meta.get("precision") or ("int8" if _onnx_is_int8(p) else "fp32")  # a graph from elsewhere: scan
        if precision == "int8":
            self.precision, self.precision_reason = "int8", _INT8_REASON

    def run(
        self, images: np.ndarray, sizes: np.ndarray, class_mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feed = _feed(images, sizes, class_mask if self.class_input else None)  # None: the graph's default, all
        try:
            labels, boxes, scores = self.session.run(None, feed)
        except Exception as e:  # ONNX Runtime's own exception types (InvalidArgument...) are not RuntimeErrors
            raise RuntimeError(f"{self.path}: ONNX Runtime failed ({' '.join(str(e).split())[:300]})") from None
        return labels, boxes, scores


#: ONNX operators of a quantized graph (QDQ as ``rtdetr export --int8`` writes it, or the QOperator forms).
_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
_INT8_REASON = "quantized at export"


def _onnx_is_int8(path: Path) -> bool:
    """Whether the ONNX graph at ``path`` is quantized (holds int8 operators); False when ``onnx`` is missing."""
    try:
        import onnx
    except ImportError:
        return False
    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type in _INT8_OPS for node in graph.node)


_OV_PRECISIONS = {
    "float32": "fp32",
    "f32": "fp32",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "float16": "fp16",
    "f16": "fp16",
}


class OpenVinoDetector(_GraphDetector):
    """OpenVINO runtime for an IR converted from our ONNX export; same ``run``/``detect`` interface as
    :class:`OnnxRuntimeDetector`. Class names come from the ``<stem>.json`` written beside the ``.xml``.

    Args:
        path: the ``.xml`` file.
        threads: inference threads (None = OpenVINO's default).
        precision: OpenVINO inference precision hint, e.g. ``"bf16"`` on AVX512-BF16 CPUs (None = default).
    """

    kind = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None, precision: str | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ImportError("OpenVINO inference needs the 'openvino' package (pip install openvino)") from None
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such OpenVINO model")
        if not p.with_suffix(".bin").is_file():
            raise FileNotFoundError(
                f"{p}: its weights {p.with_suffix('.bin').name} are not beside it (an OpenVINO model is the .xml and "
                "the .bin of the same name; copy both)"
            )
        config: dict[str, str] = {}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        try:
            core = ov.Core()
            model = core.read_model(str(p))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with long messages
            # e.g. ONEDNN_MAX_CPU_ISA=AVX2 on an AMX Xeon: "Supported primitive descriptors list is empty" (MaxPool)
            cap = cpu_info().onednn_cap
            hint = f"; {cap} is set, under which OpenVINO may not compile it: unset it" if cap else ""
            raise RuntimeError(f"{p}: OpenVINO cannot compile this model ({_openvino_reason(e)}){hint}") from None
        try:  # OpenVINO runs fp32 graphs in bf16 by itself on CPUs with native bf16: say so
            hint = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))  # e.g. "<Type: 'bfloat16'>"
            name = hint.split("'")[1] if "'" in hint else hint
            self.precision = _OV_PRECISIONS.get(name, self.precision)
            self.precision_reason = "OpenVINO's inference precision on this CPU"
        except Exception:  # an older OpenVINO without the property: keep the nominal fp32
            pass
        if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):  # the int8 graph's IR
            self.precision_reason = f"{_INT8_REASON}; its other layers in {self.precision}"
            self.precision = "int8"
        port = next((i for i in self.compiled.inputs if CLASS_MASK in i.get_names()), None)
        dim = port.get_partial_shape()[-1] if port is not None else None
        self.class_input = dim.get_length() if dim is not None and dim.is_static else None
        sidecar = p.with_suffix(".json")
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        self.class_names = meta.get("class_names")
        self.run_data = _dict_or_none(meta.get("run_data"))
        self.decoder_depth, self.decoder_layers = recorded_ints(meta, "decoder_depth", "decoder_layers")
        size = meta.get("image_size")
        self.image_size = (int(size[0]), int(size[1])) if size else None
        self.path = p

    def run(
        self, images: np.ndarray, sizes: np.ndarray, class_mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.class_input and class_mask is None:  # an OpenVINO input has no default: every class
            class_mask = np.ones((1, self.class_input), dtype=bool)
        res = self.compiled(_feed(images, sizes, class_mask if self.class_input else None))
        outs = {o.get_any_name(): v for o, v in res.items()}
        return outs["labels"], outs["boxes"], outs["scores"]
