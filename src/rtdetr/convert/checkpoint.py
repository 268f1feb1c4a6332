"""Reading, loading and saving checkpoints: ours, official ``.pth`` and HF safetensors.

Loading is safe by default (``torch.load(weights_only=True)``): a file that needs arbitrary code to unpickle is
refused with a clear message. Every failure names the file and the problem.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rtdetr.config import ConfigError, ModelConfig, from_dict, merge_overrides, to_dict
from rtdetr.convert.hf import hf_to_official, is_hf_state_dict, model_config_from_hf
from rtdetr.convert.official import REGENERABLE, adapt_state_dict, infer_model_config, is_tensor_dict, strip_prefix
from rtdetr.models.rtdetr import RTDETR, build_model
from rtdetr.models.variants import create_model, get_model_config, list_models

__all__ = [
    "CheckpointError",
    "atomic_save",
    "remove_stale_saves",
    "LoadReport",
    "extract_state_dict",
    "checkpoint_class_names",
    "convert_checkpoint",
    "load_model",
    "load_model_and_names",
    "load_state_dict_into",
    "open_checkpoint",
    "read_checkpoint",
    "save_model",
]


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message names the file and the problem."""


@dataclass
class LoadReport:
    """What :func:`load_state_dict_into` did not load."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 20) -> str:
        def block(title: str, items: list) -> str:
            more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
            return f"  {title} ({len(items)}):\n" + "\n".join(f"    {x}" for x in items[:limit]) + more

        parts = []
        if self.missing:
            parts.append(block("missing in checkpoint", self.missing))
        if self.unexpected:
            parts.append(block("unexpected in checkpoint", self.unexpected))
        if self.mismatched:
            parts.append(block("shape mismatch (key, checkpoint, model)", self.mismatched))
        return "\n".join(parts)


def read_checkpoint(path: str | os.PathLike, weights_only: bool = True, mmap: bool = False) -> dict[str, Any]:
    """Load a ``.pth``/``.pt``/``.bin`` (torch) or ``.safetensors`` file onto the CPU.

    Args:
        weights_only: refuse pickled code objects (default). Set False only for files you trust.
        mmap: map the tensors instead of reading them (torch files in the zip format: every file torch.save
            writes), for a look at a large file's other entries.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    if p.suffix.lower() in (".onnx", ".xml"):  # an exported graph: runs (predict, val, serve), never trains
        raise CheckpointError(
            f"{p}: an exported {'ONNX' if p.suffix.lower() == '.onnx' else 'OpenVINO'} graph, not a checkpoint;"
            " predict, val, benchmark and serve run it, while training and converting need the .pth it came from"
        )
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(
                f"{p}: reading safetensors needs the 'safetensors' package (pip install 'rtdetr[hf]')"
            ) from None
        try:
            return dict(load_file(str(p), device="cpu"))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{p}: not a valid safetensors file ({e})") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=weights_only, mmap=mmap)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise CheckpointError(
                f"{p}: refused to unpickle {found.group(1)!r}: the file holds objects other than tensors and "
                "containers and could run arbitrary code when loaded. Pass weights_only=False only if you trust it."
            ) from None
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint (corrupt or another format)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None
    except Exception as e:  # unpickling arbitrary bytes fails in many ways (KeyError, IndexError, ...)
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p}: expected a dict checkpoint, found {type(obj).__name__}")
    return dict(obj)


def extract_state_dict(ckpt: Mapping[str, Any], origin: str = "checkpoint") -> tuple[dict[str, Tensor], str]:
    """Pick the weights out of a checkpoint dict and convert them to the official layout.

    Order: ``ema.module`` (official release files and our EMA), ``model``, ``state_dict``, or the dict itself.

    Returns:
        ``(state_dict, source)`` with source one of ``"ema"``, ``"model"``, ``"state_dict"``, ``"raw"``, each with
        ``"+hf"`` appended when HF names were converted.
    """
    state: Any
    ema = ckpt.get("ema")
    if isinstance(ema, Mapping) and is_tensor_dict(ema.get("module")):
        state, source = ema["module"], "ema"
    elif is_tensor_dict(ckpt.get("model")):
        state, source = ckpt["model"], "model"
    elif is_tensor_dict(ckpt.get("state_dict")):
        state, source = ckpt["state_dict"], "state_dict"
    elif is_tensor_dict(ckpt):
        state, source = ckpt, "raw"
    else:
        raise CheckpointError(
            f"{origin}: no state dict found (looked for 'ema.module', 'model', 'state_dict' and a "
            f"plain tensor dict; top-level keys: {sorted(map(str, ckpt))[:10]})"
        )
    state = strip_prefix(state, "module.")
    if is_hf_state_dict(state):
        try:
            state = hf_to_official(state)
        except ValueError as e:
            raise CheckpointError(f"{origin}: cannot convert HF weights: {e}") from None
        source += "+hf"
    return dict(state), source


def non_finite_tensors(state: Mapping[str, Tensor]) -> list[str]:
    """The keys of the weights holding NaN or infinite values, sorted. Regenerable buffers are not weights (the
    official ``anchors`` hold inf where invalid)."""
    return sorted(
        k
        for k, v in state.items()
        if not REGENERABLE.search(k) and v.is_floating_point() and not bool(v.isfinite().all())
    )


def load_state_dict_into(
    model: nn.Module, state: Mapping[str, Tensor], strict: bool = True, origin: str = "checkpoint"
) -> LoadReport:
    """Load ``state`` (official layout, either key version) into ``model``.

    With ``strict`` any missing, unexpected or mis-shaped key raises :class:`CheckpointError` listing them all
    (weights holding NaN or infinite values raise it in either mode);
    otherwise the loadable subset is loaded and the report says what was skipped (fine-tuning with another
    number of classes, for example).
    """
    target = model.state_dict()
    state = adapt_state_dict(state, target)
    report = LoadReport(
        missing=sorted(k for k in target if k not in state),
        unexpected=sorted(k for k in state if k not in target),
        mismatched=sorted(
            (k, tuple(v.shape), tuple(target[k].shape))
            for k, v in state.items()
            if k in target and tuple(v.shape) != tuple(target[k].shape)
        ),
    )
    if strict and not report.ok:
        raise CheckpointError(f"{origin}: weights do not fit the model:\n{report.describe()}")
    bad = {k for k, _, _ in report.mismatched} | set(report.unexpected)
    broken = [k for k in non_finite_tensors(state) if k not in bad]
    if broken:
        raise CheckpointError(
            f"{origin}: {len(broken)} weight tensor(s) hold NaN or infinite values ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}): the weights are broken (saved from a diverged run?)"
        )
    model.load_state_dict({k: v for k, v in state.items() if k not in bad}, strict=False)
    return report


def _hf_config_beside(path: Path) -> dict | None:
    cfg = path.with_name("config.json")
    if cfg.is_file():
        try:
            return dict(json.loads(cfg.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{cfg}: unreadable HF config ({e})") from None
    return None


#: the files a folder given as a model stands for, in this order: a run's best and last, an HF download
FOLDER_MODELS = ("best.pth", "last.pth", "model.safetensors")


def checkpoint_file(source: str | Path) -> str | Path:
    """``source``, or for a folder the model file in it: a training run's ``best.pth`` (else ``last.pth``), or an
    HF download's ``model.safetensors``. Raises :class:`CheckpointError` for a folder holding none."""
    folder = Path(source)
    if not folder.is_dir():
        return source
    for name in FOLDER_MODELS:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder}: a folder without {', '.join(FOLDER_MODELS)}; give the model file itself")


def open_checkpoint(
    source: str | os.PathLike, weights_only: bool = True, mmap: bool = False
) -> tuple[Path, dict[str, Any], dict[str, Tensor], str]:
    """``(file, checkpoint, state dict in the official layout, origin)`` of ``source``: the file itself, or a
    folder's model file (:func:`checkpoint_file`), read (:func:`read_checkpoint`) and its weights picked out
    (:func:`extract_state_dict`). Raises :class:`CheckpointError` naming the file."""
    path = Path(checkpoint_file(Path(source)))
    ckpt = read_checkpoint(path, weights_only=weights_only, mmap=mmap)
    return (path, ckpt, *extract_state_dict(ckpt, str(path)))


def load_model(
    source: str | os.PathLike,
    variant: str | None = None,
    weights_only: bool = True,
    strict: bool = True,
    **overrides: Any,
) -> RTDETR:
    """Build a model from a variant name or a checkpoint file, whatever its origin.

    * a registered variant name (``"rtdetr_r18vd"``): random weights;
    * our checkpoint (carries ``model_config``): rebuilt exactly;
    * an official ``.pth``: config inferred from the tensors (``variant`` pins the name, e.g. for ``*_dsp``);
    * HF ``model.safetensors``: config from the ``config.json`` beside it, else inferred after conversion;
    * a folder: its ``best.pth``, ``last.pth`` or ``model.safetensors`` (:func:`checkpoint_file`).

    ``overrides`` (e.g. ``num_classes=3``, ``decoder={"eval_idx": 2}``) apply on top; with ``strict=False``
    mismatching heads are left at their random initialisation.
    """
    return load_model_and_names(source, variant, weights_only, strict, **overrides)[0]


def load_model_and_names(
    source: str | os.PathLike,
    variant: str | None = None,
    weights_only: bool = True,
    strict: bool = True,
    **overrides: Any,
) -> tuple[RTDETR, list[str] | None]:
    """:func:`load_model`, with the class names the file carries (:func:`checkpoint_class_names`; None for a
    variant name, a file without names, or names that do not match the model's class count), read once."""
    src = str(source)
    if src in list_models():
        return create_model(src, **overrides), None
    path, ckpt, state, origin = open_checkpoint(src, weights_only)
    cfg = checkpoint_config(path, ckpt, state, origin, variant, **overrides)
    model = build_model(cfg)
    load_state_dict_into(model, state, strict=strict, origin=str(path))
    names = checkpoint_class_names(path, ckpt, origin)
    return model, names if names is not None and len(names) == cfg.num_classes else None


def checkpoint_class_names(path: Path, ckpt: Mapping[str, Any], origin: str) -> list[str] | None:
    """The class names a read checkpoint carries, by label: ours saves them (``class_names``); an HF download's
    ``config.json`` beside it has ``id2label`` (HF's placeholders ``LABEL_0``, ``LABEL_1``... count as none).
    Official files carry none."""
    names = ckpt.get("class_names")
    if isinstance(names, list | tuple):
        return [str(n) for n in names]
    hf = _hf_config_beside(path) if origin.endswith("+hf") else None
    labels = hf.get("id2label") if hf else None
    if not isinstance(labels, Mapping) or not labels:
        return None
    try:
        by_id = sorted((int(k), str(v)) for k, v in labels.items())
    except ValueError:  # a key that is not a label number
        return None
    if [i for i, _ in by_id] != list(range(len(by_id))) or all(re.fullmatch(r"LABEL_\d+", n) for _, n in by_id):
        return None
    return [n for _, n in by_id]


def checkpoint_config(
    path: Path, ckpt: Mapping[str, Any], state: Mapping[str, Tensor], origin: str, variant: str | None = None,
    **overrides: Any,
) -> ModelConfig:  # fmt: skip
    """The model config of a read checkpoint (``origin`` from :func:`extract_state_dict`): the one saved in ours,
    an HF ``config.json`` beside the file, else inferred from the tensors; ``variant`` pins the name."""
    try:
        if variant is not None:
            _check_variant(variant, ckpt, state, path)
        if isinstance(ckpt.get("model_config"), Mapping):
            cfg = from_dict(ModelConfig, merge_overrides(ckpt["model_config"], overrides))
            if variant is not None and variant != cfg.name:  # the same architecture, pinned to (or from) dsp
                method = get_model_config(variant).decoder.cross_attn_method
                pinned = {"name": variant, "decoder": {"cross_attn_method": method}}
                cfg = from_dict(ModelConfig, merge_overrides(merge_overrides(to_dict(cfg), pinned), overrides))
        elif origin.endswith("+hf") and (hf_cfg := _hf_config_beside(path)) is not None:
            cfg = from_dict(ModelConfig, merge_overrides(to_dict(model_config_from_hf(hf_cfg, variant)), overrides))
        else:
            cfg = infer_model_config(state, variant, **overrides)
    except (ConfigError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot determine the model configuration: {e}") from None
    return cfg


def _check_variant(variant: str, ckpt: Mapping[str, Any], state: Mapping[str, Tensor], path: Path) -> None:
    """A pinned variant must be the checkpoint's architecture (a ``_dsp`` name may pin the sampling method)."""
    saved = ckpt.get("model_config")
    found = str(saved.get("name")) if isinstance(saved, Mapping) else infer_model_config(state).name
    if variant.removesuffix("_dsp") != found.removesuffix("_dsp"):
        raise CheckpointError(f"{path}: holds a {found} model; the variant {variant!r} given does not match it")


def save_model(model: RTDETR, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``{"model": state_dict, "model_config": dict, **extra}`` atomically (temp file + rename)."""
    if model.config is None:
        raise ValueError("model has no config; build it with build_model/create_model")
    if model.deployed:
        raise ValueError("save the model before deploy(): fused weights cannot be reloaded into a trainable model")
    payload = {"model": model.state_dict(), "model_config": to_dict(model.config), **(extra or {})}
    return atomic_save(payload, path)


def convert_checkpoint(
    source: str | os.PathLike,
    output: str | os.PathLike,
    variant: str | None = None,
    weights_only: bool = True,
    strict: bool = True,
    **overrides: Any,
) -> tuple[Path, ModelConfig]:
    """``rtdetr convert``: load ``source`` (official, HF or ours; :func:`load_model_and_names`) and save it in our
    format at ``output`` with its config and the class names it carries (an HF ``config.json``'s ``id2label``).
    Returns the file written and the model's config."""
    model, names = load_model_and_names(source, variant, weights_only, strict, **overrides)
    named = {"class_names": names} if names else {}
    out = save_model(model, output, extra={"converted_from": str(source), **named})
    assert model.config is not None
    return out, model.config


def remove_stale_saves(folder: str | os.PathLike) -> None:
    """Delete the temporary files :func:`atomic_save` leaves when its process is killed mid-write."""
    for stale in Path(folder).glob(".*.tmp"):
        if stale.is_file():
            stale.unlink(missing_ok=True)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename: a crash never leaves a
    truncated checkpoint under ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; a checkpoint gets the usual permissions
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
