"""Post-training int8 quantization of an exported ONNX graph (ONNX Runtime static QDQ, per-channel weights),
calibrated on real images, and an OpenVINO conversion of the same graph."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["decoder_nodes_kept_fp32", "quantize_onnx_int8", "require_openvino", "to_openvino"]

log = logging.getLogger("rtdetr")

#: operators quantized
_QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def decoder_nodes_kept_fp32(graph: Any) -> list[str]:
    """The nodes of an ONNX ``graph`` (``onnx.GraphProto``) that :func:`quantize_onnx_int8` leaves in fp32 by
    default: the decoder layers' matrix products (self- and cross-attention projections, FFN, box and score heads,
    query position head) except the value projections. They run on the 300 queries, so they are a few percent of
    the time (ONNX Runtime int8 at 640: 122 ms either way), but in int8 they cost 0.6-0.7 AP points on BCCD
    (val AP 0.5792 with ONNX Runtime, 0.5776 with OpenVINO, against fp32 0.5850, `rtdetr_r18vd` at 320,
    calibrated on 64 training images); kept in fp32: 0.5868 and 0.5852 (Intel Xeon with AMX, 2026-12-06,
    ``benchmarks/results_fast_path_accuracy_amx_decoder_fp32.json``). The value projections run over every
    memory token and quantize well."""
    return [
        n.name for n in graph.node
        if n.op_type in _QUANTIZED_OPS and "/decoder/decoder/" in n.name and "value_proj" not in n.name
    ]  # fmt: skip


def _calibration_batches(images: Sequence[str | Path | Image.Image], size: tuple[int, int]) -> Iterator[dict]:
    from rtdetr.data.dataset import load_image

    h, w = size
    for item in images:
        img = item if isinstance(item, Image.Image) else load_image(item)
        arr = np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        yield {
            "images": arr.transpose(2, 0, 1)[None],
            "orig_target_sizes": np.array([[img.width, img.height]], dtype=np.int64),
        }


def quantize_onnx_int8(
    onnx_path: str | Path,
    out_path: str | Path,
    calibration_images: Sequence[Any],
    image_size: tuple[int, int],
    per_channel: bool = True,
    decoder_fp32: bool = True,
    reduce_range: bool = True,
) -> Path:
    """Write an int8 (QDQ) copy of ``onnx_path``: convolutions and matrix products are quantized with activation
    ranges calibrated on ``calibration_images`` (paths or PIL images, 32-100 is typical); the deformable-sampling,
    top-k and post-processing ops stay in fp32, and with ``decoder_fp32`` (default) so do the decoder layers'
    matrix products other than the value projections (:func:`decoder_nodes_kept_fp32`: most of int8's AP loss,
    little of its time).

    ``reduce_range`` (default) stores the weights in 7 bits (-64..63): a CPU without VNNI multiplies uint8
    activations by int8 weights in pairs summed into int16 (``vpmaddubsw``), which saturates with 8-bit weights.
    Full-range weights lost 19-23 AP points on BCCD on an AVX2 Zen 3 (ONNX Runtime 0.254, OpenVINO 0.211, against
    fp32 0.446); 7-bit ones 0.441 and 0.444 (``rtdetr_r18vd`` at 320, 2026-12-08,
    ``benchmarks/results_fast_path_accuracy_zen3_full_range.json`` for the former). The graph runs on any CPU, so
    the default holds wherever it is made."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ImportError("int8 quantization needs onnxruntime (pip install 'rtdetr[onnx]')") from None
    if not calibration_images:
        raise ValueError("int8 quantization needs calibration images (e.g. 64 from the validation set)")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = _calibration_batches(calibration_images, image_size)

        def get_next(self) -> dict | None:
            return next(self.it, None)

    src, out = Path(onnx_path), Path(out_path)
    prep = out.with_suffix(".prep.onnx")
    try:
        quant_pre_process(str(src), str(prep), skip_symbolic_shape=True)
    except Exception as e:  # pre-processing is an optimisation; quantize the original if it fails
        log.warning("ONNX pre-processing for quantization skipped (%s)", e)
        prep = src
    import onnx

    kept = decoder_nodes_kept_fp32(onnx.load(str(prep), load_external_data=False).graph) if decoder_fp32 else []
    quantize_static(
        str(prep),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=list(_QUANTIZED_OPS),
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=kept,
        reduce_range=reduce_range,
    )
    if prep != src:
        prep.unlink(missing_ok=True)
    from rtdetr.export.onnx import set_metadata

    set_metadata(out, {"precision": "int8"})  # the fp32 graph's metadata came along, "fp32" included
    return out


def require_openvino() -> None:
    """Raise ImportError, saying how to install it, when OpenVINO is missing (checked before an export starts)."""
    if importlib.util.find_spec("openvino") is None:
        raise ImportError("OpenVINO export needs the 'openvino' package (pip install 'rtdetr[openvino]')")


def _mask_default_dropped(path: Path, tmp: Path) -> Path:
    """The ONNX graph at ``path`` for OpenVINO, whose converter makes an input with a default value (the
    ``class_mask`` initializer) a constant: a copy at ``tmp`` without that default, so that the IR keeps the
    input (OpenVINO inputs have no defaults; :class:`rtdetr.export.OpenVinoDetector` gives it every class when
    unfiltered). A graph exported without the input is used as it is (``path``)."""
    import onnx

    from rtdetr.export.onnx import CLASS_MASK

    proto = onnx.load(str(path))
    found = [i for i in proto.graph.initializer if i.name == CLASS_MASK]
    if not found or CLASS_MASK not in {i.name for i in proto.graph.input}:
        return path
    proto.graph.initializer.remove(found[0])
    onnx.save(proto, str(tmp))
    return tmp


def to_openvino(onnx_path: str | Path, out_dir: str | Path) -> Path:
    """Convert an exported ONNX graph to OpenVINO IR (``<stem>.xml`` + ``.bin``) in ``out_dir``, with a
    ``<stem>.json`` sidecar holding the class names and input size from the ONNX metadata."""
    require_openvino()
    import openvino as ov

    out = Path(out_dir) / f"{Path(onnx_path).stem}.xml"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".mask_input.onnx")
    try:
        model = ov.convert_model(str(_mask_default_dropped(Path(onnx_path), tmp)))
    finally:
        tmp.unlink(missing_ok=True)
    ov.save_model(model, str(out))
    try:
        import onnx

        from rtdetr.export.onnx import BAKED_KEYS

        meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        sidecar = {
            "class_names": json.loads(meta["class_names"]) if "class_names" in meta else None,
            "image_size": [int(v) for v in meta["image_size"].split(",")] if "image_size" in meta else None,
            "variant": meta.get("variant") or None,
            "run_data": json.loads(meta["run_data"]) if "run_data" in meta else None,
            **{k: int(meta[k]) for k in BAKED_KEYS if k in meta},
        }
        out.with_suffix(".json").write_text(json.dumps(sidecar))
    except ImportError:
        pass
    return out
