"""Strict loading of typed dataclass configs: a mapping (YAML recipe, checkpoint, CLI overrides) becomes a
dataclass with every value type-checked against the field annotations; an unknown key is an error with a
"did you mean" hint. Generic: :mod:`rtdetr.config` holds the dataclasses themselves.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = ["ConfigError", "apply_dotted_overrides", "from_dict", "merge_overrides", "to_dict", "yaml_error_text"]


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the dotted path."""


T = TypeVar("T")


def yaml_error_text(e: yaml.YAMLError) -> str:
    """A YAML parse error in one line: ``not valid YAML at line L, column C: <problem>`` (PyYAML's own message spans
    several lines and names ``"<unicode string>"`` instead of the file)."""
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {getattr(e, 'problem', None) or e}"


def _suggest(key: str, options: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, options, n=1)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


def _coerce(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return from_dict(hint, value, path)  # type: ignore[arg-type]
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, path)
            except ConfigError as e:
                errors.append(str(e))
        if value == "auto" and type(None) in args:  # None is what "auto" means in every optional setting
            return None
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if isinstance(value, int | float) and args and args[-1] is Ellipsis:
            value = (value,)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        if args and args[-1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads '1e-4' (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{path}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):  # NaN passes every range check written as a comparison
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if hint is Any:
        return value
    raise ConfigError(f"{path}: unsupported field type {hint!r}")


#: the official code's names for settings named otherwise here
_OFFICIAL_NAMES = {"epoches": "epochs", "clip_max_norm": "clip_grad", "use_amp": "amp", "use_ema": "ema",
                   "num_workers": "workers"}  # fmt: skip


def _nested_homes(cls: Any, key: str, path: str) -> list[str]:
    """The dotted paths of the fields named ``key`` in dataclasses nested in ``cls`` (``model.num_queries``:
    ``model.decoder.num_queries``)."""
    hints, homes = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        sub = hints[f.name]
        if dataclasses.is_dataclass(sub):
            where = f"{path}.{f.name}" if path else f.name
            if key in {g.name for g in dataclasses.fields(sub)}:
                homes.append(f"{where}.{key}")
            homes += _nested_homes(sub, key, where)
    return homes


def from_dict(cls: type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, strictly.

    Raises:
        ConfigError: on an unknown key (with a suggestion), a value of the wrong type, or a failed cross-field
            check; the message names the dotted path of the offending key.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in names:
            prefix = f"{path}." if path else ""
            homes = _nested_homes(cls, str(key), path)
            if _OFFICIAL_NAMES.get(str(key)) in names:
                homes = [prefix + _OFFICIAL_NAMES[str(key)]]
            hint = f" (did you mean {' or '.join(map(repr, homes))}?)" if homes else _suggest(str(key), names, prefix)
            raise ConfigError(f"unknown config key {full!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-Python (YAML/JSON/``weights_only``-safe) nested dict of a config dataclass; tuples become lists."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    result: dict[str, Any] = plain(cfg)
    return result


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge, any other value replaces."""
    out = dict(base)
    for k, v in overrides.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_overrides(out[k], v)
        else:
            out[k] = v
    return out


def _field_hint(cls: Any, parts: list[str]) -> Any:
    """The annotation of the dotted field ``parts`` under dataclass ``cls`` (None if there is no such field)."""
    hint: Any = cls
    for part in parts:
        if not (dataclasses.is_dataclass(hint) and isinstance(hint, type)):
            return None
        hints = typing.get_type_hints(hint)
        if part not in hints:
            return None
        hint = hints[part]
    return hint


def _is_text(hint: Any) -> bool:
    """Whether a field holds text: ``str``, ``str | None`` or a Literal of strings."""
    if hint is str:
        return True
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType):
        return any(_is_text(a) for a in args if a is not type(None)) and all(
            _is_text(a) or a is type(None) for a in args
        )
    return typing.get_origin(hint) is Literal and all(isinstance(a, str) for a in args)


def apply_dotted_overrides(data: dict[str, Any], overrides: list[str], schema: Any) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to a nested dict.

    The value's type comes from the field it sets in ``schema`` (a config dataclass):
    text fields (paths, names, choices) take the text exactly as written, so ``my data #2``, ``2024`` or ``null``
    stay strings; every other field's value is read as YAML (numbers, booleans, lists).
    """
    out = merge_overrides({}, data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        hint = _field_hint(schema, parts)
        node[parts[-1]] = value if _is_text(hint) else _parse_scalar(value, hint)
    return out


def _parse_scalar(text: str, hint: Any = None) -> Any:
    if hint is float or (typing.get_origin(hint) in (Union, types.UnionType) and float in typing.get_args(hint)):
        try:
            return float(text)  # YAML 1.1 would read '2e-4' (no dot) as text
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
