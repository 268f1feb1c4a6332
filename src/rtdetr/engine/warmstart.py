"""Start a training run from a checkpoint (``init_from``): official, HF-converted or ours, another class count
allowed; another architecture only when asked (``train.partial_init``). A run that names no model takes the
checkpoint's (:func:`init_from_model_config`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from rtdetr.config import ConfigError, ModelConfig, RunConfig
from rtdetr.convert.checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_state_dict_into,
    open_checkpoint,
)

__all__ = ["init_from_checkpoint", "init_from_model_config", "warm_start"]

#: Re-initialised for a new class count: the class heads and the denoising label embedding, nothing else.
CLASS_HEADS = ("decoder.dec_score_head.", "decoder.enc_score_head.", "decoder.denoising_class_embed.")


def _read(path: str, mmap: bool = False) -> tuple[str, dict[str, Any], dict[str, Tensor], str]:
    """``(file, checkpoint, official-layout state dict, origin)`` of ``init_from`` (a run folder: its best.pth);
    what cannot be read is a :class:`ConfigError` naming the setting."""
    try:
        file, ckpt, state, origin = open_checkpoint(path, mmap=mmap)
    except CheckpointError as e:  # the setting named, and what to do where a recipe names a release file
        hint = "" if Path(path).exists() else " (give the checkpoint to start from with --init-from PATH)"
        raise ConfigError(f"init_from: {e}{hint}") from None
    return str(file), ckpt, state, origin


def _architecture(path: str, ckpt: dict[str, Any], state: dict[str, Tensor], origin: str) -> ModelConfig:
    try:
        return checkpoint_config(Path(path), ckpt, state, origin)
    except CheckpointError as e:
        raise ConfigError(f"init_from: {e}") from None


def init_from_model_config(path: str) -> ModelConfig:
    """The model config of checkpoint ``path``: the architecture a run starting from it builds where its recipe
    and settings name no model (``rtdetr train --data X --init-from rtdetrv2_r50vd.pth`` fine-tunes an R50, not the
    default R18). Saved in ours, from ``config.json`` beside an HF file, else inferred from an official file's
    tensors (mapped, not read)."""
    return _architecture(*_read(path, mmap=True))


def warm_start(model: nn.Module, cfg: RunConfig) -> list[tuple[int, str]]:
    """What a new run (not a resumed one) starts from, as ``(log level, message)`` lines: ``init_from`` loaded into
    ``model`` (:func:`init_from_checkpoint`); or, for a discrete-sampling model started from scratch, a warning."""
    if cfg.resume:
        return []
    if cfg.init_from:
        return [init_from_checkpoint(model, cfg.init_from, cfg.train.partial_init)]
    if cfg.model.decoder.cross_attn_method == "discrete":
        name = cfg.model.name
        base = name.removesuffix("_dsp") if name.endswith("_dsp") else f"{name} with decoder.cross_attn_method=default"
        return [(logging.WARNING, (
            f"{name} samples at rounded locations, so its sampling offsets get no gradient and stay as initialised "
            f"(fixed points around each reference box) when it starts from scratch. The official *_dsp models "
            f"fine-tune a trained grid_sample model: train {base}, then this one with --init-from its best.pth"
        ))]  # fmt: skip
    return []


def init_from_checkpoint(model: nn.Module, path: str, partial: bool) -> tuple[int, str]:
    """Load what fits of checkpoint ``path`` into ``model``; returns ``(log level, message)`` saying what loaded.

    Raises:
        ConfigError: tensors other than the class heads do not fit (or the checkpoint has tensors the model
            lacks) and ``partial`` is False.
    """
    path, ckpt, state, origin = _read(path)
    report = load_state_dict_into(model, state, strict=False, origin=path)
    left = sorted(set(report.missing) | {k for k, _, _ in report.mismatched})
    others = [k for k in left if not k.startswith(CLASS_HEADS)]
    if (others or report.unexpected) and not partial:
        raise ConfigError(
            f"init_from {path}: {len(others)} model tensors do not fit and the checkpoint has "
            f"{len(report.unexpected)} tensors this model lacks{_which(model, path, ckpt, state, origin)}, e.g. "
            f"{(others + report.unexpected)[:3]}; set train.partial_init=true to start from what fits"
        )
    if left or report.unexpected:
        return logging.WARNING, (
            f"initialised from {path} ({origin}): {len(left)} tensors kept at random init ({len(left) - len(others)} "
            f"class-head tensors for the new class count), e.g. {left[:4]}; {len(report.unexpected)} checkpoint "
            "tensors unused"
        )
    return logging.INFO, f"initialised from {path} ({origin}): every tensor loaded"


def _which(model: nn.Module, path: str, ckpt: dict[str, Any], state: dict[str, Tensor], origin: str) -> str:
    """Which architecture the checkpoint holds against the one the run builds, and the setting that fits them."""
    ours = getattr(getattr(model, "config", None), "name", None)
    try:
        theirs = _architecture(path, ckpt, state, origin).name
    except ConfigError:  # not one we can tell: the tensors listed say enough
        return " (another variant?)"
    if theirs == ours:  # the same variant, built with other widths or depths
        return f" (the checkpoint's {theirs} is built otherwise)"
    builds = "" if ours is None else f", this run builds {ours}"
    return (
        f" (the checkpoint holds {theirs}{builds}: --model {theirs}, or model.name={theirs} in a recipe, fine-tunes"
        " it; a run that names no model takes the checkpoint's)"
    )
