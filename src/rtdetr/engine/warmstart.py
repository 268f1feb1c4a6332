"""Start a training run from a checkpoint (``init_from``): official, HF-converted or ours, another class count
allowed; another architecture only when asked (``train.partial_init``)."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from rtdetr.config import ConfigError
from rtdetr.convert.checkpoint import (
    CheckpointError,
    checkpoint_file,
    extract_state_dict,
    load_state_dict_into,
    read_checkpoint,
)

__all__ = ["init_from_checkpoint"]

#: Re-initialised for a new class count: the class heads and the denoising label embedding, nothing else.
CLASS_HEADS = ("decoder.dec_score_head.", "decoder.enc_score_head.", "decoder.denoising_class_embed.")


def init_from_checkpoint(model: nn.Module, path: str, partial: bool) -> tuple[int, str]:
    """Load what fits of checkpoint ``path`` into ``model``; returns ``(log level, message)`` saying what loaded.

    Raises:
        ConfigError: tensors other than the class heads do not fit (or the checkpoint has tensors the model
            lacks) and ``partial`` is False.
    """
    try:
        path = str(checkpoint_file(path))  # a run folder: its best.pth
        ckpt = read_checkpoint(path)
    except CheckpointError as e:  # the setting named, and what to do where a recipe names a release file
        hint = "" if Path(path).exists() else " (give the checkpoint to start from with --init-from PATH)"
        raise ConfigError(f"init_from: {e}{hint}") from None
    state, origin = extract_state_dict(ckpt, path)
    report = load_state_dict_into(model, state, strict=False, origin=path)
    left = sorted(set(report.missing) | {k for k, _, _ in report.mismatched})
    others = [k for k in left if not k.startswith(CLASS_HEADS)]
    if (others or report.unexpected) and not partial:
        raise ConfigError(
            f"init_from {path}: {len(others)} model tensors do not fit and the checkpoint has "
            f"{len(report.unexpected)} tensors this model lacks (another variant?), e.g. "
            f"{(others + report.unexpected)[:3]}; set train.partial_init=true to start from what fits"
        )
    if left or report.unexpected:
        return logging.WARNING, (
            f"initialised from {path} ({origin}): {len(left)} tensors kept at random init ({len(left) - len(others)} "
            f"class-head tensors for the new class count), e.g. {left[:4]}; {len(report.unexpected)} checkpoint "
            "tensors unused"
        )
    return logging.INFO, f"initialised from {path} ({origin}): every tensor loaded"
