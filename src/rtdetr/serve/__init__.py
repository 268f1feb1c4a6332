"""HTTP service: ``rtdetr serve MODEL`` (needs ``pip install rtdetr[serve]``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

try:
    from rtdetr.serve.app import ServeConfig, create_app, limit_malloc_arenas
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
    decoder_depth: int | None = None,
    image_size: tuple[int, int] | None = None,
    **detector_kwargs: Any,
) -> None:
    """Load ``model`` (checkpoint, variant name, ``.onnx`` or OpenVINO ``.xml``) and serve it until interrupted.

    Args:
        fuse: fold Conv+BN and RepVGG branches (``deploy()``) of a PyTorch model: same outputs, faster.
        decoder_depth: decoder layers run when a request names none (PyTorch models; an exported graph's
            depth is fixed at export).
        image_size: ``(height, width)`` to run at (default: the model's; an exported graph runs at its own only).
        **detector_kwargs: passed to :class:`rtdetr.RTDETR` (``device``, ``precision``, ``channels_last``...).
    """
    import uvicorn

    from rtdetr.api import RTDETR
    from rtdetr.options import size_text

    _check_port(host, port)  # before the model loads: a port in use was found only after the start-up line
    limit_malloc_arenas()
    detector = RTDETR(model, fuse=fuse, **detector_kwargs)
    detector.backend.set_decoder_depth(decoder_depth)
    cfg = config or ServeConfig()
    app = create_app(detector, cfg, image_size)
    print(
        f"rtdetr serve: {model} ({detector.backend.kind}, {detector.precision}: {detector.precision_reason}) at "
        f"{size_text(image_size or detector.image_size)} on "
        f"http://{host}:{port} - web page at /, API at /predict, docs at /docs; Ctrl+C stops",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True, limit_concurrency=cfg.max_pending * 2)


def _check_port(host: str, port: int) -> None:
    """Raise ``OSError`` naming ``host:port`` when the service could not listen there (in use, no such address)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closed port's wait is fine
        try:
            sock.bind((host, port))
        except OSError as e:
            why = e.strerror or e
            raise OSError(f"{host}:{port}: cannot listen there ({why}); choose another --port or --host") from None
