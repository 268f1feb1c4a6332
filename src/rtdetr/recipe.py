"""Training recipes: YAML files (``yaml.safe_load``) plus overrides, resolved into a :class:`RunConfig`.

Kept apart from :mod:`rtdetr.config` (the torch-free schema) because a recipe names its model by variant, and
the variant table lives with the models.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from rtdetr.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_dotted_overrides,
    from_dict,
    merge_overrides,
    to_dict,
)
from rtdetr.config_io import _suggest, yaml_error_text
from rtdetr.models.variants import get_model_config, get_variant

__all__ = ["RECIPES_DIR", "bundled_recipes", "find_recipe", "keyword_sections", "load_recipe", "run_config_from_dict"]

#: The recipes shipped inside the package (``rtdetr train -c fast_small`` works wherever rtdetr is installed).
RECIPES_DIR = Path(__file__).resolve().parent / "configs"


def bundled_recipes() -> list[str]:
    """The names of the shipped recipes (``fast_small``, ``rtdetrv2_r18vd_120e_coco``, ...), sorted."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def find_recipe(path: str | Path) -> Path:
    """The recipe file ``path`` means: the file itself where it exists, else the shipped recipe of that name
    (``fast_small``, ``fast_small.yaml``, or ``configs/fast_small.yaml`` where the repository used to hold them).
    Neither: a :class:`ConfigError` listing the shipped names."""
    p = Path(path)
    if p.is_file():
        return p
    bundled = _bundled(p)
    if bundled is not None:
        return bundled
    stem, names = _stem(p), bundled_recipes()
    raise ConfigError(
        f"{p}: no such recipe file, nor a shipped recipe of that name{_suggest(stem, names)}; shipped: "
        + ", ".join(names)
    )


def _read_recipe(p: Path) -> dict[str, Any]:
    """A recipe file's mapping; a missing file, bad YAML (line and column in one line) or another shape is a
    :class:`ConfigError` naming the file."""
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"{p}: cannot read recipe ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: {yaml_error_text(e)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{p}: a recipe must be a mapping with model/data/train sections")
    if "names" in loaded or "nc" in loaded:  # a YOLO data.yaml given where a recipe goes (-c, info)
        raise ConfigError(f"{p}: a dataset description (YOLO data.yaml), not a training recipe: give it as the data "
                          f"(--data {p}); rtdetr check-data {p} summarises it")  # fmt: skip
    return loaded


def run_config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Build a :class:`RunConfig`; ``model`` may name a registered variant (``name``) plus overrides."""
    data = dict(data)
    unknown = set(data) - {"model", "data", "train", "init_from", "resume", "base"}
    if unknown:
        key = sorted(unknown)[0]
        sections = {"train": TrainConfig, "data": DataConfig, "model": ModelConfig}
        home = next((f"{s}.{key}" for s, c in sections.items() if key in {f.name for f in dataclasses.fields(c)}), None)
        hint = (
            f" (did you mean {home!r}?)" if home else _suggest(key, ["model", "data", "train", "init_from", "resume"])
        )
        raise ConfigError(f"unknown config key {key!r}{hint}")
    model = dict(data.get("model") or {})
    model_cfg = from_dict(ModelConfig, merge_overrides(_architecture(model, data), model), "model")
    return RunConfig(
        model=model_cfg,
        data=from_dict(DataConfig, data.get("data") or {}, "data"),
        train=from_dict(TrainConfig, data.get("train") or {}, "train"),
        init_from=data.get("init_from"),
        resume=data.get("resume"),
    )


def _architecture(model: dict[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """The model config a run's ``model`` section (its ``name`` popped) builds on: the named variant; where none
    is named, the ``init_from`` checkpoint's own (fine-tuning an official R50 file needs no ``--model``), else
    ``rtdetr_r18vd``."""
    if "name" not in model and run.get("init_from") and not run.get("resume"):
        from rtdetr.engine.warmstart import init_from_model_config

        return to_dict(init_from_model_config(str(run["init_from"])))
    name = str(model.pop("name", "rtdetr_r18vd"))
    try:
        get_variant(name)
    except ValueError as e:
        raise ConfigError(f"model.name: {e}") from None
    return to_dict(get_model_config(name))


def _run_of(checkpoint: str) -> dict[str, Any]:
    """The run config saved in a training checkpoint, set to write into the checkpoint's folder."""
    from rtdetr.convert.checkpoint import CheckpointError, read_checkpoint

    try:
        run = read_checkpoint(checkpoint).get("run_config")
    except CheckpointError as e:
        raise ConfigError(f"resume: {e}") from None
    if not isinstance(run, Mapping):
        raise ConfigError(
            f"resume: {checkpoint} holds no run config (not a last.pth written by rtdetr train); "
            "pass the recipe or --data the run was started with"
        )
    run = merge_overrides(run, {"train": {"output_dir": str(Path(checkpoint).parent)}})
    run.pop("init_from", None)  # the checkpoint itself is the starting point
    return {**run, "resume": checkpoint}


def load_recipe(
    path: str | Path | None, overrides: list[str] | None = None, updates: Mapping[str, Any] | None = None
) -> RunConfig:
    """Load a YAML training recipe (a file, or a shipped recipe's name: :func:`find_recipe`; one optional
    ``base:`` recipe, beside the file or shipped), merge the nested
    ``updates`` (values used as they are: paths stay paths), then apply dotted ``overrides`` (``key.sub=value``
    text, typed by the field they set). Unknown keys anywhere are errors.

    With ``resume`` set (in ``updates`` or ``overrides``) and no recipe, the run config saved in that checkpoint
    is the base, writing into the checkpoint's folder: ``rtdetr train --resume runs/x/last.pth`` (or ``runs/x``)
    alone continues exactly that run; flags given beside it (e.g. ``--epochs``) still apply."""
    recipe = find_recipe(path) if path is not None else None
    data: dict[str, Any] = _with_base(recipe) if recipe is not None else {}
    resume = (updates or {}).get("resume") or next(
        (o.split("=", 1)[1] for o in overrides or [] if o.startswith("resume=")), None
    )
    if resume:
        resume = _last_of(str(resume))
    if resume and path is None:  # continue that run: its own settings, in its own folder
        data = _run_of(resume)
    recipe_data = dict(data.get("data") or {})
    data = merge_overrides(data, updates or {})
    data = apply_dotted_overrides(data, overrides or [])
    _val_follows_train(recipe_data, data)
    _absolute_data_paths(data)
    if resume:
        data["resume"] = resume  # a run folder given: its last.pth
    try:
        return run_config_from_dict(data)
    except ConfigError as e:
        raise _in_recipe(e, recipe) from None


def _in_recipe(error: ConfigError, recipe: Path | None) -> ConfigError:
    """``error`` of the merged settings, prefixed with the recipe file where the recipe alone (base included) gives
    the same error: a bad key or value in the file is said with its file, an override's without, and a recipe
    that the overrides complete (``schedule_over: time`` with ``--minutes``) is not checked alone."""
    if recipe is None:
        return error
    try:
        run_config_from_dict(_with_base(recipe))
    except ConfigError as alone:
        if str(alone) == str(error):
            return ConfigError(f"{recipe}: {error}")
    return error


def _with_base(p: Path) -> dict[str, Any]:
    """Recipe file ``p``'s settings over those of its ``base:`` recipe (beside it, else a shipped one), if any."""
    loaded = _read_recipe(p)
    if "base" not in loaded:
        return loaded
    base_name = str(loaded.pop("base"))
    base_path = p.parent / base_name
    base_path = base_path if base_path.is_file() else _bundled(Path(base_name)) or base_path
    base = _read_recipe(base_path)
    if "base" in base:
        raise ConfigError(f"{base_path}: a base recipe cannot have its own base")
    return merge_overrides(base, loaded)


def _absolute_data_paths(run: dict[str, Any]) -> None:
    """``data.train`` / ``data.val`` that exist from the working folder become absolute, so that the config saved in
    the checkpoints still finds them from another folder (``rtdetr val CKPT``, ``--resume``)."""
    section = run.get("data")
    if isinstance(section, Mapping):
        found = {k: v for k in ("train", "val") if isinstance(v := section.get(k), str) and v and Path(v).exists()}
        run["data"] = {**section, **{k: os.path.abspath(v) for k, v in found.items()}}


def _val_follows_train(recipe: Mapping[str, Any], run: dict[str, Any]) -> None:
    """A recipe that validates on its training source (``val`` = ``train``: the val split of one dataset, as
    fast_small's ``my_dataset/data.yaml``) goes on doing so when the training source is replaced (``--data``) and
    ``val`` is not: the placeholder used to stay and fail ("data.val: my_dataset/data.yaml: no such file")."""
    given = run.get("data")
    if not isinstance(given, Mapping) or not recipe.get("train") or recipe.get("val") != recipe.get("train"):
        return
    if given.get("val") == recipe["val"] and given.get("train") != recipe["train"]:
        run["data"] = {**given, "val": given.get("train")}


def _stem(p: Path) -> str:
    return p.stem if p.suffix.lower() in (".yaml", ".yml") else p.name


def _bundled(p: Path) -> Path | None:
    """The shipped recipe named like ``p`` (a bare name, with or without .yaml, or ``configs/<name>``), if there
    is one; a missing file in another folder is not taken for a shipped one."""
    if p.parent not in (Path("."), Path("configs")):
        return None
    bundled = RECIPES_DIR / f"{_stem(p)}.yaml"
    return bundled if bundled.is_file() else None


def _last_of(resume: str) -> str:
    """The checkpoint to resume: ``resume`` itself, or the ``last.pth`` in it when it is a run folder."""
    folder = Path(resume)
    if not folder.is_dir():
        return resume
    if (folder / "last.pth").is_file():
        return str(folder / "last.pth")
    raise ConfigError(f"resume: {folder} is a folder without a last.pth (rtdetr train writes one after each epoch)")


#: where RTDETR.train() takes what other tools (and rtdetr's CLI) pass under these names
_TRAIN_ALIASES = {
    "size": "image_size=",
    "imgsz": "image_size=",
    "img_size": "image_size=",
    "project": "output=",
    "train": "data=",
    "threads": "torch.set_num_threads() before train() (the CLI's --threads)",
}


def keyword_sections(settings: dict[str, Any], function: Callable[..., Any]) -> dict[str, dict[str, Any]]:
    """``{"data": {...}, "train": {...}}``: each of ``function``'s extra keywords (its ``**kwargs``) in the config
    section that has a setting of that name (no name is in both); a TypeError for a name of neither, with the
    closest of those and of the function's own parameters."""
    train_keys = [f.name for f in dataclasses.fields(TrainConfig)]
    data_keys = [f.name for f in dataclasses.fields(DataConfig) if f.name not in ("train", "val", "image_size")]
    out: dict[str, dict[str, Any]] = {"data": {}, "train": {}}
    for key, value in settings.items():
        if key in train_keys or key in data_keys:
            out["train" if key in train_keys else "data"][key] = str(value) if isinstance(value, Path) else value
            continue
        params = inspect.signature(function).parameters.values()
        named = [q.name for q in params if q.name != "self" and q.kind is not q.VAR_KEYWORD]
        close = difflib.get_close_matches(key, [*named, *train_keys, *data_keys], n=1)
        hint = _TRAIN_ALIASES.get(key) or (f"{close[0]}=" if close else "")
        raise TypeError(f"{function.__qualname__}() got an unexpected keyword argument {key!r}"
                        + (f": did you mean {hint}?" if hint else " (not a train or data setting)"))  # fmt: skip
    return out
