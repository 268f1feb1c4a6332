"""Checkpoint I/O and conversion from official and HF formats."""

from rtdetr.convert.checkpoint import (
    CheckpointError,
    LoadReport,
    extract_state_dict,
    load_model,
    load_state_dict_into,
    read_checkpoint,
    save_model,
)
from rtdetr.convert.hf import hf_to_official, model_config_from_hf
from rtdetr.convert.official import adapt_state_dict, infer_model_config

__all__ = [
    "CheckpointError",
    "LoadReport",
    "adapt_state_dict",
    "extract_state_dict",
    "hf_to_official",
    "infer_model_config",
    "load_model",
    "load_state_dict_into",
    "model_config_from_hf",
    "read_checkpoint",
    "save_model",
]
