"""The options of the commands that run a model, in one table: name, default, allowed range and help.

The Python API takes these names with these defaults, the CLI builds its flags from the same fields
(:func:`add_arguments`), the service uses the same defaults, and every value is checked in one place
(``__post_init__``), with a message naming the option and its allowed range.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import numbers
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "InferenceOptions", "ServeConfig", "add_arguments", "as_size", "class_key", "from_args", "parse_size",
    "resolve_classes", "size_text",
]  # fmt: skip


def parse_size(text: str) -> tuple[int, int]:
    """An input size as typed: one side for a square (``640``) or ``WIDTHxHEIGHT`` as resolutions are written
    (``640x384``: 640 wide, 384 high), each side >= 32; returns ``(height, width)``, the order the models take."""
    parts = text.strip().lower().split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2):
        raise argparse.ArgumentTypeError(f"{text!r} is not a side (640) or WIDTHxHEIGHT (640x384)")
    if min(sides) < 32:
        raise argparse.ArgumentTypeError(f"{text} is too small; it must be >= 32 on each side")
    width, height = sides if len(sides) == 2 else sides * 2
    return height, width


def as_size(value: Any, what: str = "image_size") -> tuple[int, int] | None:
    """An input size given in Python as ``(height, width)``: from a side (``640``), a ``(height, width)`` pair or
    text as :func:`parse_size` reads it (``"640x384"``: width first); None stays None. A ValueError names anything
    else, and a side under 32."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_size(value)
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"{what}: {e}") from None

    def side(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    sides = [value] * 2 if side(value) else list(value) if isinstance(value, Sequence) else []
    if len(sides) != 2 or not all(map(side, sides)):
        raise ValueError(f"{what} must be a side (640), (height, width) or 'WIDTHxHEIGHT' text, got {value!r}")
    if min(sides) < 32:
        raise ValueError(f"{what} must be >= 32 on each side, got {value!r}")
    return int(sides[0]), int(sides[1])


def size_text(size: Sequence[int]) -> str:
    """``(height, width)`` written as :func:`parse_size` reads it: ``WIDTHxHEIGHT``."""
    return f"{size[1]}x{size[0]}"


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class InferenceOptions:
    """What ``predict`` (API, CLI, service) filters and runs with."""

    conf: float = _opt(0.25, "minimum score kept, 0..1")
    max_det: int = _opt(300, "most detections per image, >= 1")
    classes: tuple[int, ...] | None = _opt(None, "keep only these classes: ids or names", type=str)
    decoder_depth: int | None = _opt(None, "decoder layers to run (fewer = faster; default: the model's)")
    image_size: tuple[int, int] | None = _opt(
        None,
        "input size: a side (640) or WIDTHxHEIGHT (640x384) (default: the model's)",
        flag="--size",
        type=parse_size,
    )  # (height, width)
    batch: int = _opt(1, "images per forward pass, >= 1")

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf <= 1.0:
            raise ValueError(f"conf must be within 0..1, got {self.conf}")
        if self.max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {self.max_det}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.decoder_depth is not None and self.decoder_depth < 1:
            raise ValueError(f"decoder_depth must be >= 1, got {self.decoder_depth}")
        if self.image_size is not None and min(self.image_size) < 32:
            raise ValueError(f"image_size must be >= 32 on each side, got {tuple(self.image_size)}")
        if self.classes is not None and min(self.classes, default=0) < 0:
            raise ValueError(f"classes must be class ids >= 0, got {list(self.classes)}")

    def check_model(self, num_classes: int | None, decoder_layers: int | None) -> None:
        """Reject what does not fit the model: class ids past its classes, a depth past its decoder."""
        if num_classes is not None and self.classes and max(self.classes) >= num_classes:
            raise ValueError(f"classes must be within 0..{num_classes - 1} for this {num_classes}-class model")
        if self.decoder_depth is not None and decoder_layers is not None and self.decoder_depth > decoder_layers:
            raise ValueError(f"decoder_depth must be within 1..{decoder_layers} for this model")


@dataclass(frozen=True)
class ServeConfig:
    """Service limits and batching (``rtdetr serve``)."""

    max_batch: int = _opt(8, "images per inference batch")
    max_wait_ms: float = _opt(5.0, "how long a partial batch waits to fill")
    max_pending: int = _opt(256, "requests admitted at once (uploading, decoding, queued, running); more get a 503")
    max_upload_mb: float = _opt(16.0, "largest request body")
    max_pixels: int = _opt(40_000_000, "largest image, checked before decoding")
    decode_workers: int = _opt(2, "images decoded in parallel (bounds the memory of decoded images)")
    max_det: int = _opt(InferenceOptions.max_det, "most detections returned per image")

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_pending", "max_det", "decode_workers", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.max_upload_mb < math.inf:  # written so that NaN fails too
            raise ValueError(f"max_upload_mb must be a number > 0, got {self.max_upload_mb}")
        if not 0 <= self.max_wait_ms < math.inf:
            raise ValueError(f"max_wait_ms must be a number >= 0, got {self.max_wait_ms}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def resolve_classes(classes: Iterable[int | str] | str | None, names: Sequence[str]) -> tuple[int, ...] | None:
    """Class ids from ids or names (``[0, "car"]``, ``"person,car"``, digits as ids; names matched ignoring case,
    and ``_`` as a space). Ids are checked against the model later (:meth:`InferenceOptions.check_model`).

    Raises:
        ValueError: a name the model does not have, with the closest ones it has.
    """
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c.strip()]
    lookup = {class_key(n): i for i, n in enumerate(names)}
    ids: list[int] = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int | str):
            raise ValueError(f"classes must be class ids or names, got {c!r}")
        if isinstance(c, int) or _is_id(c):
            ids.append(int(c))
        elif class_key(c) in lookup:
            ids.append(lookup[class_key(c)])
        else:
            near = difflib.get_close_matches(class_key(c), list(lookup), n=3)
            hint = f"; did you mean {', '.join(repr(names[lookup[k]]) for k in near)}?" if near else ""
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            raise ValueError(f"classes: this model has no class named {c!r}{hint} (its classes: {shown})")
    return tuple(ids)


def _is_id(text: str) -> bool:
    """Whether a class given as text is an id (``"2"``, ``"-1"``: checked against the model later), not a name."""
    return text.strip().lstrip("-").isdigit()


def class_key(name: str) -> str:
    """How class names compare: case, ``_`` against space and repeated spaces do not matter."""
    return " ".join(name.replace("_", " ").lower().split())


def _flag(f: dataclasses.Field) -> str:
    return str(f.metadata.get("flag", "--" + f.name.replace("_", "-")))


def add_arguments(parser: argparse.ArgumentParser, cls: Any, names: typing.Sequence[str] | None = None) -> None:
    """Add one flag per field of dataclass ``cls`` (``names`` selects), with its default and help; tuples take
    several values, and a ``--size`` field one size (:func:`parse_size`)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if names is not None and f.name not in names:
            continue
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        base = args[0]
        kw: dict[str, Any] = {"dest": f.name, "default": f.default, "help": f.metadata.get("help", "")}
        if typing.get_origin(base) is tuple:
            kw["type"] = f.metadata.get("type", int)  # str for classes: ids or names, resolved against the model
            if _flag(f) != "--size":
                kw["nargs"] = "+"
        elif base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = base
        if f.default is not None and base is not bool:
            kw["help"] += f" (default {f.default})"
        parser.add_argument(_flag(f), **kw)


def from_args(args: argparse.Namespace, cls: Any) -> Any:
    """Build ``cls`` from the parsed flags :func:`add_arguments` added; a ValueError names the flag."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if isinstance(value, list):
            if f.metadata.get("type") is str:  # ids here; names need the model (resolve_classes)
                bad = [v for v in value if not _is_id(str(v))]
                if bad:
                    raise ValueError(f"{_flag(f)} {bad[0]!r} is a name: resolve names against a model first")
                value = [int(v) for v in value]
            value = tuple(value)
        values[f.name] = value
    try:
        return cls(**values)
    except ValueError as e:
        name, _, rest = str(e).partition(" ")
        flag = next((_flag(f) for f in dataclasses.fields(cls) if f.name == name), name)
        raise ValueError(f"{flag} {rest}") from None
