"""The HTTP service: ``POST /predict`` an image, get JSON detections (and optionally the drawn image).

Endpoints:
    ``GET /``          the web page (upload or drop an image, threshold and decoder-depth controls).
    ``GET /health``    liveness and load: ``{"status": "ok", "pending": n, "queued": n, "uptime_s": t}``.
    ``GET /info``      the model (variant, classes, input size, decoder layers, backend, what was compiled) and
                       the service limits.
    ``POST /predict``  the image as a multipart file field ``image`` or as the raw body. Query parameters:
                       ``conf`` (0..1), ``max_det``, ``classes`` (ids or names: ``"0,2"``, ``"person,car"``),
                       ``decoder_depth``, ``draw``.

Every client mistake is a 4xx with ``{"detail": "..."}`` naming the problem: 400 undecodable or empty upload,
413 too many bytes or pixels, 422 bad query parameter; 503 (with ``Retry-After``) when ``max_pending`` requests
are already in flight. Boxes are absolute xyxy pixels in the uploaded image.
"""

from __future__ import annotations

import base64
import io
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rtdetr.api import RTDETR
from rtdetr.data.dataset import ImageTooLarge, load_image, load_image_covering
from rtdetr.data.records import HEIF_BRANDS
from rtdetr.engine.predictor import filter_detections, to_input
from rtdetr.options import InferenceOptions, ServeConfig, resolve_classes, size_text
from rtdetr.serve.batcher import Busy, MicroBatcher
from rtdetr.viz import draw_detections

__all__ = ["ServeConfig", "create_app", "limit_malloc_arenas"]


class _BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by its Content-Length or while it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            bad = not length.isdigit()
            if bad or int(length) > self.max_bytes:
                status, msg = (400, "invalid Content-Length") if bad else (413, self._message(int(length)))
                await _send_json(send, status, msg)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message(received))
            return message

        await self.app(scope, limited, send)

    def _message(self, n: int) -> str:
        return f"request body of {n} bytes is over the limit of {self.max_bytes} bytes"


async def _send_json(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(
    detector: RTDETR, config: ServeConfig | None = None, image_size: tuple[int, int] | None = None
) -> FastAPI:
    """A FastAPI app serving ``detector`` (a PyTorch model or an exported ONNX/OpenVINO graph) at ``image_size``
    ``(height, width)`` (default: the model's; ValueError for a graph exported at another)."""
    cfg = config or ServeConfig()
    predictor = detector.predictor(conf=0.0, max_det=cfg.max_det, image_size=image_size)
    model = predictor.detector
    layers, default_depth, backend = model.decoder_layers, model.decoder_depth, model.kind
    mode = getattr(model, "compile", None)  # compiled at start-up for these batch sizes, at the default depth only
    warm = warm_up_batches(cfg.max_batch)
    compiled = {"mode": mode, "batch_sizes": warm, "decoder_depth": default_depth} if mode is not None else None
    info = detector.info()

    def run_batch(
        images: np.ndarray, sizes: np.ndarray, depth: int | None, classes: list[frozenset[int] | None]
    ) -> list[dict[str, torch.Tensor]]:
        """One forward pass at ``depth`` for the batch, each image's own class filter in the post-processing (no
        autograd: it would record every request's forward pass and keep its activations)."""
        model.set_decoder_depth(depth or default_depth)
        with torch.inference_mode():
            return model.detect(to_input(images), torch.from_numpy(sizes), cfg.max_det, classes)

    batcher = MicroBatcher(run_batch, cfg.max_batch, cfg.max_wait_ms / 1000, cfg.max_pending, _memory_trimmer())
    decoding = None  # asyncio.Semaphore, made inside the running loop
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        import asyncio

        nonlocal decoding
        decoding = asyncio.Semaphore(cfg.decode_workers)
        if mode is not None:  # before the first request, not during it
            _warm_up(model, warm, predictor.image_size)
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="rtdetr", version=_version(), lifespan=lifespan)
    app.add_middleware(_BodyLimit, max_bytes=cfg.max_upload_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(msgs)}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("rtdetr.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "pending": batcher.pending,
            "queued": batcher.queued,
            "uptime_s": round(time.time() - started, 1),
        }

    @app.get("/info")
    async def model_info() -> dict[str, Any]:
        return {
            "model": info,
            "backend": backend,
            "class_names": detector.class_names,
            "image_size": list(predictor.image_size),
            "decoder_layers": layers,
            "decoder_depth": default_depth,
            "decoder_fixed": model.exported,
            "compiled": compiled,
            "limits": {**asdict(cfg), "max_upload_bytes": cfg.max_upload_bytes},
            "stats": {"batches": batcher.batches, "images": batcher.images, "pending": batcher.pending},
        }

    @app.post("/predict")
    async def predict(
        request: Request,
        conf: float = Query(InferenceOptions.conf, ge=0.0, le=1.0, description="minimum score"),
        max_det: int = Query(cfg.max_det, ge=1, le=cfg.max_det, description="most detections returned"),
        classes: str | None = Query(
            None, description="classes to keep, comma-separated ids or names: 0,2 or person,car"
        ),
        decoder_depth: int | None = Query(None, ge=1, description="decoder layers to run (a graph: its own)"),
        draw: bool = Query(False, description="also return the drawn image as a JPEG data URL"),
    ) -> JSONResponse:
        t0 = time.perf_counter()
        keep = _parse_classes(classes, list(detector.class_names))
        if decoder_depth is not None:
            if layers is not None and decoder_depth > layers:
                raise HTTPException(400, f"decoder_depth {decoder_depth} is over the model's {layers} layers")
            if model.exported:  # a graph only checks the depth: the one baked in, else a message saying so
                try:
                    model.set_decoder_depth(decoder_depth)
                except ValueError as e:
                    raise HTTPException(400, str(e)) from None
        try:
            async with batcher.admit():
                data, name = await _read_upload(request)
                assert decoding is not None
                async with decoding:
                    size, prepared = await run_in_threadpool(
                        _decode, data, name, cfg.max_pixels, predictor.resize, predictor.cover
                    )  # only the network-size copy waits in the queue; draw=true decodes the upload again
                if not draw:
                    del data
                t1 = time.perf_counter()
                det = await batcher.submit(prepared, size, decoder_depth, None if keep is None else frozenset(keep))
                t2 = time.perf_counter()
                det = filter_detections(det, conf, keep, max_det, image_size=size)
                drawn = None
                if draw:
                    async with decoding:
                        drawn = await run_in_threadpool(_drawn, data, name, cfg.max_pixels, det, detector.class_names)
        except Busy as e:
            raise HTTPException(503, str(e), headers={"Retry-After": "1"}) from None
        names = detector.class_names
        body: dict[str, Any] = {
            "image": {"name": name, "width": size[0], "height": size[1]},
            "detections": [
                {"label": int(lb), "name": names[int(lb)], "score": round(float(s), 5), "box": [round(v, 2) for v in b]}
                for lb, s, b in zip(det["labels"].tolist(), det["scores"].tolist(), det["boxes"].tolist())
            ],
            "conf": conf,
            "decoder_depth": decoder_depth or default_depth,
        }
        if drawn is not None:
            body["drawn"] = drawn
        body["timing_ms"] = {
            "decode": round((t1 - t0) * 1000, 2),
            "queue_and_inference": round((t2 - t1) * 1000, 2),
            "total": round((time.perf_counter() - t0) * 1000, 2),
        }
        return JSONResponse(body)

    return app


def warm_up_batches(max_batch: int) -> list[int]:
    """The batch sizes a compiled service compiles at start-up: the powers of two below ``max_batch`` and
    ``max_batch`` (8: 1, 2, 4, 8); a batch of another size is padded to the next of them."""
    return sorted({1 << i for i in range(max_batch.bit_length()) if 1 << i < max_batch} | {max_batch})


def _warm_up(model: Any, batches: list[int], image_size: tuple[int, int]) -> None:
    import sys

    print(
        f"rtdetr serve: compiling the model for batches of {', '.join(map(str, batches))} at {size_text(image_size)} "
        "(about 30 s each for r18vd on 2 CPU cores)",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            model.warm_up(batches, image_size, seal=True)
    except Exception as e:  # inductor's own traceback runs to a hundred lines: its first line says what failed
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"rtdetr serve: compiling the model failed ({why}); serve it without --compile") from None
    print(f"rtdetr serve: compiled in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def _head(data: bytes) -> str:
    """How a body starts, for a message: ``empty`` or its first bytes."""
    return f"starting {data[:12]!r}" if data else "empty"


async def _read_upload(request: Request) -> tuple[bytes, str]:
    """The image bytes of a multipart field ``image`` (or the only file field) or of the raw body."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=4, max_fields=16)
        except HTTPException:
            raise
        except Exception as e:  # malformed multipart
            raise HTTPException(400, f"malformed multipart body ({e})") from None
        try:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            field = form.get("image")
            upload = field if isinstance(field, UploadFile) else (files[0] if len(files) == 1 else None)
            if upload is None:
                raise HTTPException(400, "multipart upload without a file field 'image'")
            data, name = await upload.read(), upload.filename or "upload"
        finally:
            await form.close()
    else:
        data, name = await request.body(), "upload"
        # `curl --data-binary @img.jpg` labels the body as a form: accept it when the bytes are an image
        if ctype.startswith("application/x-www-form-urlencoded") and not _looks_like_image(data):
            raise HTTPException(
                400,
                f"upload: not an image (a {len(data)}-byte body sent as a form, {_head(data)}); send the image"
                " file's bytes as the raw body or as multipart/form-data (field 'image')",
            )
    if not data:
        raise HTTPException(400, f"{name}: empty upload")
    return data, name


_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def _looks_like_image(data: bytes) -> bool:
    """JPEG, PNG, GIF, BMP, TIFF, WebP, HEIC/HEIF or AVIF by their first bytes."""
    return (
        data.startswith(_IMAGE_MAGIC)
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
        or (data[4:8] == b"ftyp" and data[8:12] in (*HEIF_BRANDS, b"avif", b"avis"))
    )


def _decode(
    data: bytes, name: str, max_pixels: int, resize: Any, cover: tuple[int, int] | None
) -> tuple[tuple[int, int], np.ndarray]:
    """The upload's (width, height) and its network input (``resize`` of the image). A large JPEG decodes at a
    reduced DCT scale that still covers ``cover`` (h, w; the predictor's: the run's ``data.shrink_above``, 2 by
    default, times the network's input size), as training, ``val`` and ``predict`` load it: a 12-megapixel photo in
    a fraction of the time, the input resized from it as from the full image."""
    try:
        image, size = load_image_covering(io.BytesIO(data), cover, name=name, max_pixels=max_pixels)
    except ImageTooLarge as e:
        raise HTTPException(413, str(e)) from None
    except OSError as e:
        raise HTTPException(400, f"{e}; send a JPEG, PNG, BMP, WebP or TIFF image") from None
    return size, resize(image)


def _drawn(data: bytes, name: str, max_pixels: int, det: dict[str, torch.Tensor], names: list[str]) -> str:
    image = load_image(io.BytesIO(data), name=name, max_pixels=max_pixels)
    drawn = draw_detections(image, det["boxes"].tolist(), det["labels"].tolist(), det["scores"].tolist(), names)
    buf = io.BytesIO()
    drawn.save(buf, "JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _parse_classes(text: str | None, names: list[str]) -> set[int] | None:
    """``classes=0,2`` or ``classes=person,car`` (or both mixed) -> class ids; 400 naming what is wrong."""
    if text is None or not text.strip():
        return None
    try:
        ids = set(resolve_classes(text, names) or ())
    except ValueError as e:
        raise HTTPException(400, str(e)) from None
    num_classes = len(names)
    bad = sorted(i for i in ids if not 0 <= i < num_classes)
    if bad:
        raise HTTPException(400, f"class ids {bad} are not in 0..{num_classes - 1}")
    return ids


def _glibc() -> Any:
    """The C library when it is glibc (has ``malloc_trim``), else None."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives every thread that allocates its own heap arena (up to 8 per core); the decode threads of a
    busy server would each keep their high-water mark. Two arenas keep resident memory flat under load. Call it
    before threads start (no-op without glibc)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(-8, arenas)  # M_ARENA_MAX


def _memory_trimmer() -> Any:
    """On glibc, ``malloc_trim``: hands freed heap memory back to the OS when the queue runs empty; without it
    the resident size keeps the high-water mark of every burst. None elsewhere."""
    libc = _glibc()
    return None if libc is None else lambda: libc.malloc_trim(0)


def _version() -> str:
    from rtdetr import __version__

    return __version__
