"""The command line's argument types (a bad value is a usage error, exit 2, naming the rule), the options shared
by the commands that run a model, and the JSON the commands print."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any

from rtdetr.engine.backend import COMPILE_MODES

#: where ``val`` and ``predict`` write when ``-o`` is not given (a used one moves on to ``runs/val2``...)
DEFAULT_VAL_DIR, DEFAULT_PREDICT_DIR = "runs/val", "runs/predict"

__all__ = ["DEFAULT_PREDICT_DIR", "DEFAULT_VAL_DIR", "add_predict_outputs", "add_speed_options", "count0", "dumps",
           "fraction", "minutes", "port", "positive_int", "side", "within", "error_text"]  # fmt: skip


def add_speed_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that run a model: device, decoder depth, precision, memory layout."""
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--threads", type=positive_int, help="CPU threads (PyTorch, ONNX Runtime and OpenVINO)")
    p.add_argument("--decoder-depth", type=positive_int, help="decoder layers to run (fewer = faster)")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto (default): bf16 autocast on CPUs with native bf16 (AVX512_BF16/AMX), fp16 on CUDA, else fp32",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory layout for convolutions (default: on for the CPU)",
    )
    p.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        help="torch.compile the model in this mode (each batch size compiles once, about 30 s on 2 CPU cores, and a "
        "smaller batch runs padded to it; 'serve' compiles its batch sizes at start-up; on the CPU the weights are "
        "frozen: r18vd ran 1.5x as fast in bf16, 1.2x in fp32 on an AMX Xeon, 1.2x in bf16 on a Zen 4)",
    )
    p.add_argument("--cuda-graph", action="store_true", help="replay inference as CUDA graphs (CUDA, fixed size)")


def add_predict_outputs(p: argparse.ArgumentParser) -> None:
    """What ``rtdetr predict`` writes and prints."""
    p.add_argument(
        "-o", "--output", "--save-dir", dest="output",
        help="folder for drawn images and videos with their JSON"
        f" (default {DEFAULT_PREDICT_DIR}, or {DEFAULT_PREDICT_DIR}2, 3... when it holds files)",
    )  # fmt: skip
    p.add_argument(
        "--video-stride", type=positive_int, default=1, help="of videos and streams, every n-th frame (default 1)"
    )
    saving = p.add_mutually_exclusive_group()
    saving.add_argument("--no-save", action="store_true", help="print only")
    saving.add_argument(
        "--save-txt", action="store_true", help="also write YOLO labels (class cx cy w h) to <output>/labels/"
    )
    p.add_argument("--save-conf", action="store_true", help="--save-txt with the score as a sixth column")
    p.add_argument(
        "--save-crop", action="store_true", help="also write each detection's crop to <output>/crops/<class>/"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per image")


def within(kind: Callable[[str], Any], low: float, high: float | None = None, noun: str = "a number") -> Any:
    """An argparse type: a ``kind`` (int, float) >= ``low`` and, given ``high``, <= ``high``; a bad value is a
    usage error naming the rule."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not math.isfinite(value):  # float("nan") passes every comparison below
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < low:
            rule = f"within {low:g}..{high:g}" if high is not None else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"{value} is too small; it must be {rule}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; it must be within {low:g}..{high:g}")
        return value

    return parse


positive_int, count0, side = (within(int, low, noun="a whole number") for low in (1, 0, 32))
fraction = within(float, 0.0, 1.0)
minutes = within(float, 0.01)
port = within(int, 1, 65535, noun="a port number")


def dumps(obj: Any) -> str:
    """Strict JSON for ``--json`` and ``-o``: an undefined number (NaN, e.g. the AP of a class without objects) is
    ``null``; Python's own ``NaN`` is not JSON and stops jq, JavaScript and most parsers."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), indent=2, allow_nan=False)


def error_text(e: BaseException) -> str:
    """The one line a failed command prints: ours as written; a bare OS error (``[Errno 17] File exists: 'x'``) as
    the path first, then what is wrong with it."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror and str(e).startswith("[Errno"):
        hint = "; an output folder is needed there" if isinstance(e, FileExistsError | NotADirectoryError) else ""
        return f"{e.filename}: {e.strerror.lower()}{hint}"
    return str(e)
