"""rtdetr: RT-DETR / RT-DETRv2 real-time end-to-end object detection in pure PyTorch."""

from rtdetr.config import ModelConfig
from rtdetr.models import RTDETR, PostProcessor, build_model, create_model, get_model_config, list_models

__version__ = "0.1.0"

__all__ = [
    "RTDETR",
    "ModelConfig",
    "PostProcessor",
    "__version__",
    "build_model",
    "create_model",
    "get_model_config",
    "list_models",
]
