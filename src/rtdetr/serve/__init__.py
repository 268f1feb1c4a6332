"""HTTP service: ``rtdetr serve MODEL`` (needs ``pip install rtdetr[serve]``)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

try:
    from rtdetr.serve.app import ServeConfig, create_app
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"rtdetr serve needs the serve extra: pip install 'rtdetr[serve]' ({e})") from None
from rtdetr.serve.batcher import Busy, MicroBatcher

__all__ = ["Busy", "MicroBatcher", "ServeConfig", "create_app", "serve"]

log = logging.getLogger("rtdetr")


def serve(
    model: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServeConfig | None = None,
    fuse: bool = True,
    **detector_kwargs: Any,
) -> None:
    """Load ``model`` (checkpoint, variant name, ``.onnx`` or OpenVINO ``.xml``) and serve it until interrupted.

    Args:
        fuse: fold Conv+BN and RepVGG branches (``deploy()``) of a PyTorch model: same outputs, faster.
        **detector_kwargs: passed to :class:`rtdetr.RTDETR` (``device``, ``precision``, ``channels_last``...).
    """
    import uvicorn

    from rtdetr.api import RTDETR

    _limit_malloc_arenas()
    detector = RTDETR(model, fuse=fuse, **detector_kwargs)
    if detector.onnx is None and detector.checkpoint is None:
        log.warning("serving %s with RANDOM weights (pass a checkpoint to get real detections)", model)
    cfg = config or ServeConfig()
    app = create_app(detector, cfg)
    log.info("serving %s on http://%s:%d (web page at /, API at /predict, docs at /docs)", model, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", limit_concurrency=cfg.max_pending * 2)


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives every thread that allocates its own heap arena (up to 8 per core); the decode threads of a
    busy server would each keep their high-water mark. Two arenas keep resident memory flat under load."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
