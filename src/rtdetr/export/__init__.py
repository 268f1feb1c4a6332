"""Export (ONNX with the post-processor in the graph) and runtimes for exported models."""

from rtdetr.export.onnx import DeployModel, ExportReport, compare_detections, export_onnx
from rtdetr.export.runtime import OnnxRuntimeDetector

__all__ = ["DeployModel", "ExportReport", "OnnxRuntimeDetector", "compare_detections", "export_onnx"]
