"""rtdetr: RT-DETR / RT-DETRv2 real-time end-to-end object detection in pure PyTorch."""

from rtdetr.api import RTDETR
from rtdetr.config import ModelConfig
from rtdetr.convert import load_model
from rtdetr.engine.results import Results
from rtdetr.models import PostProcessor, build_model, create_model, get_model_config, list_models

__version__ = "0.1.0"

__all__ = [
    "RTDETR",
    "ModelConfig",
    "PostProcessor",
    "Results",
    "__version__",
    "build_model",
    "create_model",
    "get_model_config",
    "list_models",
    "load_model",
]
