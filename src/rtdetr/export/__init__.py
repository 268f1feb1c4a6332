"""Export (ONNX with the post-processor in the graph) and runtimes for exported models."""

from rtdetr.export.onnx import DeployModel, ExportReport, compare_detections, export_onnx
from rtdetr.export.quantize import quantize_onnx_int8, to_openvino
from rtdetr.export.runtime import OnnxRuntimeDetector, OpenVinoDetector

__all__ = [
    "DeployModel",
    "ExportReport",
    "OnnxRuntimeDetector",
    "OpenVinoDetector",
    "compare_detections",
    "export_onnx",
    "quantize_onnx_int8",
    "to_openvino",
]
