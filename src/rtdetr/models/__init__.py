"""Models. Shape letters used in docstrings: ``B`` batch, ``Q`` queries, ``C`` classes, ``D`` hidden width,
``V`` flattened memory tokens, ``H, W`` image or feature-map size. Boxes are ``cxcywh`` normalised to ``[0, 1]``
unless a docstring says ``xyxy``/absolute."""

from rtdetr.models.postprocess import PostProcessor
from rtdetr.models.rtdetr import RTDETR, build_model
from rtdetr.models.variants import create_model, get_model_config, get_variant, list_models

__all__ = ["RTDETR", "PostProcessor", "build_model", "create_model", "get_model_config", "get_variant", "list_models"]
