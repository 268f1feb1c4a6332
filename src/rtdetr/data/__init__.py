"""Datasets (COCO json, YOLO txt, Pascal VOC), augmentations and batching."""

from rtdetr.data.dataset import BatchCollator, DetectionDataset, load_cover, load_image
from rtdetr.data.detect import detect_format, load_index
from rtdetr.data.records import DataError, DatasetIndex, ImageRecord

__all__ = [
    "BatchCollator",
    "DataError",
    "DatasetIndex",
    "DetectionDataset",
    "ImageRecord",
    "detect_format",
    "load_cover",
    "load_image",
    "load_index",
]
