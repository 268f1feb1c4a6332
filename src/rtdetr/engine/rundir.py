"""The files of a training run: which folder a new run writes to, and what ``best.pth`` holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["RUN_FILES", "best_checkpoint", "fresh_folder", "fresh_output_dir"]

RUN_FILES = ("last.pth", "best.pth", "metrics.csv")


def fresh_output_dir(path: Path) -> Path:
    """``path`` if no run has written there yet, else the first of ``<path>2``, ``<path>3``, ... that is free."""
    candidate, i = path, 1
    while any((candidate / name).exists() for name in RUN_FILES):
        i += 1
        candidate = path.with_name(f"{path.name}{i}")
    return candidate


def fresh_folder(path: str | Path) -> Path:
    """``path`` if it does not exist or is empty, else the first of ``<path>2``, ``<path>3``, ... that is: where a
    command's default output folder goes, so that a second run never overwrites the first one's files."""
    path = Path(path)
    candidate, i = path, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        i += 1
        candidate = path.with_name(f"{path.name}{i}")
    return candidate


def best_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``best.pth``: the evaluation weights (EMA when on) with config, class names and metrics, and no optimizer,
    scheduler or raw training weights (``last.pth`` keeps those for ``--resume``): about a third of the size."""
    weights = ckpt["ema"]["module"] if ckpt.get("ema") else ckpt["model"]
    drop = ("model", "ema", "optimizer", "scheduler", "scaler")
    return {"model": weights, **{k: v for k, v in ckpt.items() if k not in drop}}
