"""What a model file holds, without building the model: ``rtdetr info <file>``.

Origin (ours, official, HF), variant, classes, input size, decoder, parameter count, whether every weight is
finite, and for our training checkpoints the epoch, best AP, training time, whether it can be resumed and the
settings it was trained with; of an exported graph, its classes, input size, file size and the data of the run it
was exported from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rtdetr.convert.checkpoint import (
    checkpoint_class_names,
    checkpoint_config,
    non_finite_tensors,
    open_checkpoint,
)
from rtdetr.convert.official import REGENERABLE
from rtdetr.options import size_text

__all__ = ["describe_checkpoint", "describe_export", "format_summary"]

#: run settings shown by :func:`format_summary` (dotted keys of the saved run config)
_RUN_KEYS = ("data.train", "data.val", "data.image_size", "train.epochs", "train.time_budget_s", "train.batch_size",
             "train.lr", "train.recipe_defaults", "init_from")  # fmt: skip


def describe_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready summary of the checkpoint at ``path`` (ours, official ``.pth`` or HF ``model.safetensors``).

    Raises:
        CheckpointError: the file is missing, unreadable or holds no RT-DETR weights.
    """
    p, ckpt, state, origin = open_checkpoint(path)
    cfg = checkpoint_config(p, ckpt, state, origin)
    ours = isinstance(ckpt.get("model_config"), Mapping)
    names = checkpoint_class_names(p, ckpt, origin)
    weights = {k: v for k, v in state.items() if not REGENERABLE.search(k)}
    dec = cfg.decoder
    out: dict[str, Any] = {
        "path": str(p),
        "origin": "ours" if ours else ("HF" if origin.endswith("+hf") else "official"),
        "weights_from": origin.removesuffix("+hf"),
        "variant": cfg.name,
        "num_classes": cfg.num_classes,
        "class_names": names,
        "image_size": list(cfg.eval_spatial_size) if cfg.eval_spatial_size else None,
        "decoder_layers": dec.num_layers,
        "decoder_depth": dec.eval_idx % dec.num_layers + 1,
        "params_m": round(
            sum(v.numel() for k, v in weights.items() if not k.endswith(("running_mean", "running_var"))) / 1e6, 2
        ),  # fmt: skip
        "non_finite_tensors": non_finite_tensors(state),
    }
    if ours:
        best: Mapping[str, Any] = ckpt["best"] if isinstance(ckpt.get("best"), Mapping) else {}
        out |= {
            "epoch": ckpt.get("epoch"),
            "step": ckpt.get("global_step"),
            "train_time_s": ckpt.get("train_time_s"),
            "best_ap": best.get("ap"),
            "best_epoch": best.get("epoch"),
            "resumable": all(k in ckpt for k in ("optimizer", "epoch", "run_config")),
            "date": ckpt.get("date"),
            "run": _run_settings(ckpt.get("run_config")),
        }
    return out


def describe_export(path: str | os.PathLike) -> dict[str, Any]:
    """A summary of an exported graph: ``.onnx`` (its metadata) or OpenVINO ``.xml`` (its ``.json`` sidecar)."""
    from rtdetr.export.onnx import BAKED_KEYS
    from rtdetr.export.runtime import OnnxRuntimeDetector, OpenVinoDetector, recorded_ints

    p = Path(path)
    meta: Mapping[str, Any]
    if p.suffix == ".xml":
        det: OnnxRuntimeDetector | OpenVinoDetector = OpenVinoDetector(p)
        sidecar = p.with_suffix(".json")
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    else:
        det = OnnxRuntimeDetector(p)
        meta = det.session.get_modelmeta().custom_metadata_map
    names = det.class_names
    return {
        "path": str(p),
        "origin": "OpenVINO IR" if p.suffix == ".xml" else "ONNX",
        "variant": meta.get("variant") or None,
        "num_classes": len(names) if names else None,
        "class_names": list(names) if names else None,
        "image_size": list(det.image_size) if det.image_size else None,
        "precision": det.precision,  # int8 for a quantized graph; an IR: OpenVINO's precision on this CPU
        "size_mb": round(sum(f.stat().st_size for f in (p, p.with_suffix(".bin")) if f.is_file()) / 2**20, 1),
        "run": {k: v for k, v in _run_settings({"data": det.run_data}).items() if k.startswith("data.")},
        "class_input": det.class_input is not None,  # a class filter ranks over every query inside the graph
        **dict(zip(BAKED_KEYS, recorded_ints(meta, *BAKED_KEYS))),
    }


def _run_settings(run: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in _RUN_KEYS:
        value: Any = run
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None:
            found[key] = value
    return found


def _baked(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rows of what an export fixed in its graph (decoder depth, detections per image), where it says."""
    rows = []
    if info.get("decoder_depth") and info.get("decoder_layers"):
        rows.append(("decoder", f"runs {info['decoder_depth']} of {info['decoder_layers']} layers (fixed at export)"))
    if info.get("max_det"):
        rows.append(("detections", f"at most {info['max_det']} per image"))
    if "class_input" in info:
        among = f"its {info['max_det']}" if info.get("max_det") else "its"
        rows.append(
            ("class filter", "inside the graph, over every query (class_mask input)")
            if info["class_input"]
            else ("class filter", f"among {among} detections (no class_mask input)")
        )
    return rows


def format_summary(info: Mapping[str, Any]) -> str:
    """The lines ``rtdetr info <file>`` prints for a :func:`describe_checkpoint` or :func:`describe_export`
    summary."""
    names = info["class_names"]
    shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "") if names else "-"
    size = size_text(info["image_size"]) if info["image_size"] else "-"
    broken = info.get("non_finite_tensors")
    if "size_mb" in info:  # an exported graph
        rows: list[tuple[str, Any]] = [
            ("variant", info["variant"] or "-"),
            ("classes", f"{info['num_classes']}: {shown}"),
            ("input size", size),
            ("precision", info["precision"]),
            *_baked(info),
            ("file size", f"{info['size_mb']} MB"),
            *info.get("run", {}).items(),  # the data of the training run it was exported from, where recorded
        ]
        head = f"{info['path']}: {info['origin']} export (predict, val, benchmark and serve run it)"
        return "\n".join([head] + [f"  {label:<22}{value}" for label, value in rows])
    weights = f"{len(broken)} tensor(s) hold NaN or inf: {', '.join(broken[:3])}" if broken else "all finite"
    rows = [
        ("variant", f"{info['variant']} ({info['params_m']:.2f} M parameters)"),
        ("classes", f"{info['num_classes']}: {shown}"),
        ("input size", size),
        ("decoder", f"{info['decoder_layers']} layers, runs {info['decoder_depth']} at inference"),
        ("weights", weights),
    ]
    if info["origin"] == "ours":
        ap = "-" if info["best_ap"] is None or info["best_ap"] < 0 else f"{info['best_ap']:.4f}"
        trained = f"epoch {info['epoch']}, step {info['step']}"
        trained += f", {info['train_time_s'] / 60:.1f} min" if info["train_time_s"] else ""
        trained += f", saved {info['date']}" if info["date"] else ""
        rows += [
            ("trained", trained),
            ("best AP", ap + (f" (epoch {info['best_epoch']})" if ap != "-" else "")),
            ("resumable", "yes (rtdetr train --resume <file>)" if info["resumable"] else "no (weights only)"),
            *info["run"].items(),
        ]
    lines = [f"{info['path']}: {info['origin']} checkpoint ({info['weights_from']} weights)"]
    lines += [f"  {label:<22}{value}" for label, value in rows]
    return "\n".join(lines)
