"""Batched inference over images, lists, folders, globs, videos and camera/stream indices.

Pre-processing matches the official pipeline: RGB, resize to the network size without keeping the aspect ratio
(PIL bilinear), scale to ``[0, 1]``; boxes are mapped back to each original image. For a model on a GPU the
resize runs there (``resize="device"``, the default on CUDA): the uint8 image is copied over and resized with
PyTorch's antialiased bilinear kernel, which gives PIL's pixels to within one grey level.
"""

from __future__ import annotations

import functools
import glob as globlib
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from rtdetr.config import DataConfig
from rtdetr.data.dataset import load_cover, load_image, load_image_covering, shown_rgb
from rtdetr.data.records import IMAGE_SUFFIXES
from rtdetr.data.transforms import resize_pil
from rtdetr.data.yolo import listed_images
from rtdetr.engine.backend import as_detector
from rtdetr.engine.results import Results
from rtdetr.options import InferenceOptions

__all__ = ["RESIZE_MODES", "VIDEO_SUFFIXES", "Predictor", "filter_detections", "iter_source", "to_input"]

log = logging.getLogger("rtdetr")

#: where a batch is resized (:class:`Predictor`)
RESIZE_MODES = ("auto", "pil", "device")

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")

#: (image, path, frame, original (width, height)) items produced from any source; the image is smaller than the
#: original where a file was decoded covering the network input only (:func:`iter_source`'s ``cover``)
Item = tuple[Image.Image, str | None, int | None, tuple[int, int]]


def _as_uint8(values: np.ndarray, what: str) -> np.ndarray:
    """Pixel values as uint8: integers must lie in 0..255, floats in [0, 1] (a rounding slack of 1e-3 allowed).

    Anything else (an int array holding 0..65535, floats holding 0..255, NaN) raises instead of being clipped
    into an image of black and white pixels.
    """
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_ or not (
        np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
    ):
        raise ValueError(f"{what}: pixel type {values.dtype} is not supported (use uint8 0..255 or float 0..1)")
    lo, hi = float(values.min()), float(values.max())
    if np.issubdtype(values.dtype, np.integer):
        if lo < 0 or hi > 255:
            raise ValueError(f"{what}: integer pixels span {lo:g}..{hi:g}, expected 0..255")
        return values.astype(np.uint8)
    if not np.isfinite(values).all():
        raise ValueError(f"{what}: float pixels include NaN or infinity")
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{what}: float pixels span {lo:g}..{hi:g}, expected 0..1 (pass uint8 for 0..255 values)")
    return (np.clip(values, 0.0, 1.0) * 255).round().astype(np.uint8)


def _to_pil(obj: Any) -> Image.Image:
    """A PIL image, an ``[H, W]`` / ``[H, W, 3|4]`` RGB(A) array or a ``[3, H, W]`` tensor as an RGB PIL image.

    A PIL image is taken as a viewer shows it, as a file path would be (``Image.open`` of a phone photo keeps its
    EXIF orientation tag; 16-bit images are scaled). Arrays and tensors hold uint8 0..255 (or another integer
    type within that range) or floats in 0..1.
    """
    if isinstance(obj, Image.Image):
        return shown_rgb(obj)
    if isinstance(obj, np.ndarray | Tensor) and 0 in tuple(obj.shape):
        raise ValueError(f"{type(obj).__name__.lower()} of shape {tuple(obj.shape)} holds no pixels")
    if isinstance(obj, np.ndarray):
        if obj.ndim == 2:
            obj = np.stack([obj] * 3, -1)
        if obj.ndim != 3 or obj.shape[-1] not in (3, 4):
            first = obj.ndim == 3 and obj.shape[0] == 3
            hint = "; channels first? arr.transpose(1, 2, 0) makes it HxWx3" if first else ""
            raise ValueError(f"expected an HxWx3 RGB array, got shape {obj.shape}{hint}")
        return Image.fromarray(np.ascontiguousarray(_as_uint8(obj[..., :3], "array")))
    if isinstance(obj, Tensor):
        t = obj.detach().cpu()
        if t.ndim != 3 or t.shape[0] != 3:
            hint = "; channels last? t.permute(2, 0, 1) makes it [3, H, W]" if t.ndim == 3 and t.shape[-1] == 3 else ""
            raise ValueError(f"expected a [3, H, W] tensor, got shape {tuple(t.shape)}{hint}")
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return Image.fromarray(np.ascontiguousarray(_as_uint8(t.permute(1, 2, 0).numpy(), "tensor")))
    raise TypeError(f"unsupported image source type {type(obj).__name__}")


def _video_frames(source: str | int, stride: int = 1) -> Iterator[Item]:
    try:
        import cv2
    except ImportError:
        raise ImportError("video and camera input need OpenCV (pip install opencv-python-headless)") from None
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        if isinstance(source, int):
            raise OSError(f"camera {source}: cannot open it (no such device, or another program holds it)")
        raise OSError(f"{source}: cannot open video or stream")
    name = None if isinstance(source, int) else str(source)
    i = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % stride == 0:
                image = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                yield image, name, i, image.size
            i += 1
    finally:
        cap.release()


#: the largest image a URL may send (bytes)
MAX_URL_BYTES = 64 * 2**20


def _url_suffix(url: str) -> str:
    from urllib.parse import urlsplit

    return Path(urlsplit(url).path).suffix.lower()


def _url_image(url: str) -> Image.Image:
    """The image at an ``http(s)://`` URL whose path ends in an image extension (a video or stream URL goes to
    OpenCV). Errors name the URL: unreachable, an HTTP error, too large, or not an image."""
    import io
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (http and https only, checked above)
            data = response.read(MAX_URL_BYTES + 1)
    except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
        code = f"HTTP {e.code} " if isinstance(e, urllib.error.HTTPError) else ""
        raise OSError(f"{url}: cannot download ({code}{getattr(e, 'reason', None) or e})") from None
    if len(data) > MAX_URL_BYTES:
        raise OSError(f"{url}: more than {MAX_URL_BYTES // 2**20} MB, too large for an image")
    return load_image(io.BytesIO(data), name=url)


def iter_source(source: Any, video_stride: int = 1, cover: tuple[int, int] | None = None) -> Iterator[Item]:
    """Expand any supported source into ``(PIL image, path or None, frame or None, original (w, h))`` items.

    ``cover`` ``(height, width)``: image files larger than it are decoded only to the smallest size that covers it
    (a JPEG at a reduced DCT scale, as training and ``val`` load images: :func:`~rtdetr.data.load_image_covering`),
    their original size kept in the item; None decodes them at full resolution.

    Sources: a PIL image, an HxWx3 RGB array (uint8, or floats in 0..1), a ``[3, H, W]`` tensor (same), a batch of
    these (``[B, H, W, 3]`` array, ``[B, 3, H, W]`` tensor), an image path, a folder, a glob pattern, a video file,
    a camera index (int or digit string), an image URL (``http(s)://...jpg``, downloaded), a video or stream URL,
    a ``.txt`` file listing image or video paths (one per line), or a list of any of these.
    Unreadable images and videos inside a folder or glob are skipped with a warning naming the file; the files of a
    folder that are neither (by extension) are named in one warning.
    """
    if isinstance(source, list | tuple):
        for item in source:
            yield from iter_source(item, video_stride, cover)
        return
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        yield from _video_frames(int(source), video_stride)
        return
    if isinstance(source, str) and source.split("://", 1)[0] in ("rtsp", "rtmp", "http", "https", "udp", "tcp"):
        if source.startswith(("http://", "https://")) and _url_suffix(source) in IMAGE_SUFFIXES:
            image = _url_image(source)
            yield image, source, None, image.size
        else:
            yield from _video_frames(source, video_stride)
        return
    if isinstance(source, str | Path):
        p = Path(source)
        if p.is_dir():
            files, others = [], []
            for f in sorted(p.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                    files.append(f)
                elif f.is_file() and not f.name.startswith("."):
                    others.append(f.name)
            if not files:
                raise FileNotFoundError(f"{p}: no images or videos in this folder{_folder_hint(p, others)}")
            if others:
                more = f" and {len(others) - 5} more" if len(others) > 5 else ""
                log.warning(
                    "%s: %d file%s not read (not an image or video by its extension): %s%s",
                    p, len(others), "s" * (len(others) > 1), ", ".join(others[:5]), more,
                )  # fmt: skip
            yield from _files(files, video_stride, cover)
        elif p.is_file():
            if p.suffix.lower() == ".txt":  # a list of image/video paths, one per line (YOLO's split lists)
                yield from _files(_listed_files(p), video_stride, cover)
            elif p.suffix.lower() in VIDEO_SUFFIXES:
                yield from _video_frames(str(p), video_stride)
            else:
                yield _file_image(p, cover)
        elif any(c in str(source) for c in "*?["):
            files = sorted(Path(f) for f in globlib.glob(str(source), recursive=True) if Path(f).is_file())
            if not files:
                raise FileNotFoundError(f"{source}: the pattern matches no file")
            yield from _files(files, video_stride, cover)
        else:
            raise FileNotFoundError(f"{source}: no such file, folder or pattern")
        return
    if isinstance(source, Tensor | np.ndarray) and source.ndim == 4:
        for one in source:  # a batch: [B, 3, H, W] tensor or [B, H, W, 3] array, one image each
            image = _to_pil(one)
            yield image, None, None, image.size
        return
    image = _to_pil(source)
    yield image, None, None, image.size


def _folder_hint(folder: Path, others: list[str]) -> str:
    """Why a folder gave no images: its subfolders hold them (folders are not searched below their top level;
    a ``**`` glob is), or the other files it holds."""

    def some(names: list[str]) -> str:
        return ", ".join(names[:5]) + ", ..." * (len(names) > 5)

    media = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    below = sorted({f.relative_to(folder).parts[0] for f in folder.rglob("*") if f.suffix.lower() in media})
    if below:
        return f" (its subfolders {some(below)} hold some: the glob '{folder / '**' / '*'}' reads every image below it)"
    return f" (it holds {len(others)} other files: {some(others)})" if others else ""


def _file_image(path: Path, cover: tuple[int, int] | None) -> Item:
    """The item of an image file: decoded covering ``cover`` (h, w) where given, else at full resolution."""
    image, size = load_image_covering(path, cover)
    return image, str(path), None, size


def _listed_files(listing: Path) -> list[Path]:
    """The paths a ``.txt`` list names (:func:`~rtdetr.data.yolo.listed_images`, the YOLO split lists' reader:
    relative to the list's folder, else to the working directory); an empty list is an error."""
    files = listed_images(listing, Path.cwd())
    if not files:
        raise FileNotFoundError(f"{listing}: an empty list of images")
    return files


def _files(files: Sequence[Path], video_stride: int, cover: tuple[int, int] | None) -> Iterator[Item]:
    for f in files:
        if f.suffix.lower() in VIDEO_SUFFIXES:
            try:  # a video that cannot be opened is skipped like an unreadable image
                yield from _video_frames(str(f), video_stride)
            except OSError as e:
                log.warning("skipping %s", e)
            continue
        try:
            yield _file_image(f, cover)
        except OSError as e:
            log.warning("skipping %s", e)


@functools.cache
def _resize_pool() -> ThreadPoolExecutor:
    """The threads that resize a batch's images (one per core, at most 16)."""
    return ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1), thread_name_prefix="rtdetr-resize")


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _rgb_array(image: Image.Image) -> np.ndarray:
    """``[H, W, 3]`` uint8 (a writable copy)."""
    return np.array(_rgb(image), dtype=np.uint8)


def to_input(images: np.ndarray) -> Tensor:
    """``[B, H, W, 3]`` uint8 -> ``[B, 3, H, W]`` float in ``[0, 1]``."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def filter_detections(
    det: dict[str, Tensor],
    conf: float,
    classes: set[int] | None = None,
    max_det: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Tensor]:
    """Keep detections (sorted by score) with ``score >= conf`` and a label in ``classes``; at most ``max_det``;
    with ``image_size`` ``(width, height)`` boxes are clipped to the image (the model may predict past its edge).
    Detections holding a NaN or infinite score or coordinate are dropped, with a warning the first time (broken
    weights, or an fp16 overflow). Returns CPU tensors."""
    keep = det["scores"] >= conf
    finite = det["scores"].isfinite() & det["boxes"].isfinite().all(-1)
    if not bool(finite.all()):
        _warn_non_finite(int((~finite).sum()))
        keep &= finite
    if classes is not None:
        keep &= torch.tensor([int(lb) in classes for lb in det["labels"].tolist()], dtype=torch.bool).to(keep.device)
    out = {k: det[k][keep].cpu() for k in ("boxes", "scores", "labels")}
    if image_size is not None:
        w, h = image_size
        out["boxes"] = out["boxes"].clamp(min=0).minimum(out["boxes"].new_tensor([w, h, w, h]))
    return {k: v[:max_det] for k, v in out.items()} if max_det is not None else out


_non_finite_seen: list[int] = []  # counts already warned about (once per process: every frame would repeat it)


def _warn_non_finite(count: int) -> None:
    """Warn once: the model gave ``count`` NaN or infinite detections for an image."""
    if not _non_finite_seen:
        _non_finite_seen.append(count)
        log.warning(
            "the model gave %d detection(s) with NaN or infinite scores or boxes for an image; they are dropped (said"
            " once). Finite weights do not do this in fp32: the checkpoint may be broken (a diverged run?) or fp16"
            " overflowed (try --precision fp32)",
            count,
        )


class Predictor:
    """Run a detector over any source.

    Args:
        detector: a :class:`~rtdetr.engine.backend.Detector` (PyTorch, ONNX Runtime, OpenVINO), or an
            :class:`~rtdetr.models.RTDETR` module, wrapped with ``device``/``precision``/``channels_last``.
        class_names: names by label.
        image_size: network input ``(height, width)``.
        conf: minimum score kept; max_det: at most this many detections per image; classes: keep only these ids.
        decoder_depth: decoder layers run (None = the model's setting).
        resize: ``"pil"`` (PIL bilinear on the CPU, as in training), ``"device"`` (uint8 image to the model's
            device, antialiased bilinear there; PIL's pixels within one grey level) or ``"auto"`` (device for a
            PyTorch model on CUDA, else PIL).
        shrink_above: image files more than this many times the input size are decoded only to that size (a JPEG
            at a reduced DCT scale, as training and ``val`` load them; ``DataConfig.shrink_above``): a 12-megapixel
            photo decodes in about a third of the time. Boxes stay in the original's pixels; a result then keeps
            no image, and :meth:`Results.plot` reads the file again. 0 decodes every image at full resolution.
    """

    def __init__(
        self,
        detector: Any,
        class_names: Sequence[str],
        image_size: tuple[int, int] = (640, 640),
        device: str | torch.device = "cpu",
        conf: float = InferenceOptions.conf,
        max_det: int = InferenceOptions.max_det,
        classes: Sequence[int] | None = None,
        decoder_depth: int | None = None,
        batch_size: int = 1,
        keep_images: bool = True,
        precision: str = "fp32",
        channels_last: bool = False,
        resize: str = "auto",
        shrink_above: float = DataConfig.shrink_above,
    ) -> None:
        self.detector = as_detector(detector, device, precision=precision, channels_last=channels_last)
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
        dev = getattr(self.detector, "device", None)
        on_gpu = isinstance(dev, torch.device) and dev.type == "cuda"
        #: where images are resized: ``None`` (PIL on the CPU) or the torch device that resizes them
        self.resize_device: torch.device | None = None
        if resize == "device" or (resize == "auto" and on_gpu):
            self.resize_device = dev if isinstance(dev, torch.device) else torch.device("cpu")
        self.names = list(class_names)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.conf, self.max_det, self.batch_size, self.keep_images = conf, max_det, max(1, batch_size), keep_images
        self.classes = set(classes) if classes is not None else None
        self.cover = load_cover(self.image_size, shrink_above)  # (h, w) image files are decoded to cover, or None
        self.detector.set_decoder_depth(decoder_depth)

    def resize(self, image: Image.Image) -> np.ndarray:
        """``[H, W, 3]`` uint8 at the network size (PIL bilinear, aspect ratio not kept, as ``val`` and the official
        pipeline resize)."""
        return np.asarray(resize_pil(_rgb(image), self.image_size), dtype=np.uint8)

    def resize_tensor(self, image: np.ndarray) -> Tensor:
        """``[H0, W0, 3]`` uint8 -> ``[1, 3, H, W]`` float in ``[0, 1]`` on :attr:`resize_device`: antialiased
        bilinear (PIL's filter), in uint8 on the CPU (its fast kernel), in float on a GPU."""
        dev = self.resize_device or torch.device("cpu")
        t = torch.from_numpy(image).permute(2, 0, 1)[None].to(dev, non_blocking=True)
        if dev.type != "cpu":
            t = t.float()
        if tuple(t.shape[-2:]) != self.image_size:
            t = F.interpolate(t, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        return t.float().div_(255.0) if t.dtype == torch.uint8 else t.clamp_(0, 255).div_(255.0)

    def preprocess(
        self, images: Sequence[Image.Image], sizes: Sequence[tuple[int, int]] | None = None
    ) -> tuple[Tensor, Tensor]:
        """``[B, 3, H, W]`` network input and ``[B, 2]`` original (w, h): ``sizes``, else the images' own. A batch
        is resized on a thread pool (PIL releases the GIL while it resamples): the same pixels, several images at
        once. With :attr:`resize_device` set, the pool only converts to arrays and the resize runs on that
        device."""
        pool = _resize_pool().map if len(images) > 1 else map
        wh = torch.tensor(sizes if sizes is not None else [im.size for im in images])
        if self.resize_device is not None:
            arrays = pool(_rgb_array, images)
            return torch.cat([self.resize_tensor(a) for a in arrays]), wh
        return to_input(np.stack(list(pool(self.resize, images)))), wh

    @torch.inference_mode()
    def infer(self, x: Tensor, sizes: Tensor) -> list[dict[str, Tensor]]:
        """Model + post-processing on a prepared batch.

        Args:
            x: ``[B, 3, H, W]`` float in ``[0, 1]`` at :attr:`image_size`.
            sizes: ``[B, 2]`` original (w, h) the boxes are scaled to.

        Returns:
            per image ``{"labels": [K], "boxes": [K, 4] xyxy pixels, "scores": [K]}`` by score, K <= max_det;
            with a class filter, the best of those classes (see :meth:`Detector.postprocess`).
        """
        return self.detector.detect(x, sizes, self.max_det, self.classes)

    def _run(self, items: list[Item]) -> list[Results]:
        dets = self.infer(*self.preprocess([it[0] for it in items], [it[3] for it in items]))
        results = []
        for (img, path, frame, size), det in zip(items, dets):
            det = filter_detections(det, self.conf, self.classes, self.max_det, image_size=size)
            kept = img if self.keep_images and img.size == size else None  # a shrunk decode: plot() reads the file
            results.append(Results(det["boxes"], det["scores"], det["labels"], self.names, size, path, frame, kept))
        return results

    def stream(self, source: Any, video_stride: int = 1) -> Iterator[Results]:
        """Results one by one (lazily; for videos, cameras and large folders)."""
        buf: list[Item] = []
        for item in iter_source(source, video_stride, self.cover):
            buf.append(item)
            if len(buf) == self.batch_size:
                yield from self._run(buf)
                buf = []
        if buf:
            yield from self._run(buf)

    def __call__(self, source: Any, video_stride: int = 1) -> list[Results]:
        return list(self.stream(source, video_stride))
