"""Typed detection results for one image."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from rtdetr.viz import draw_detections

__all__ = ["Results"]


@dataclass
class Results:
    """Detections of one image, sorted by descending score.

    Attributes:
        boxes: ``[N, 4]`` absolute xyxy pixels in the original image.
        scores: ``[N]`` in ``[0, 1]``.
        labels: ``[N]`` int64 class ids.
        names: class names (index = label).
        orig_size: original ``(width, height)``.
        path: source file (None for in-memory images).
        frame: frame index for videos and streams.
        image: the original image, kept for :meth:`plot`/:meth:`save` (None where predict decoded a large image
            file shrunk: :meth:`plot` reads ``path`` again).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    names: list[str]
    orig_size: tuple[int, int]
    path: str | None = None
    frame: int | None = None
    image: Image.Image | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.scores.numel())

    def __repr__(self) -> str:
        """One line: the source, the image size and the first detections (not every class name and tensor)."""
        where = repr(self.path) if self.path is not None else "in-memory image"
        if self.frame is not None:
            where += f" frame {self.frame}"
        shown = ", ".join(f"{n} {s:.2f}" for n, s in zip(self.class_names[:5], self.scores.tolist()))
        more = f", ... ({len(self)} in all)" if len(self) > 5 else ""
        w, h = self.orig_size
        return f"Results({where}, {w}x{h}, {len(self)} detections{': ' + shown if shown else ''}{more})"

    @property
    def xyxy(self) -> Tensor:
        return self.boxes

    @property
    def xyxyn(self) -> Tensor:
        """xyxy divided by the image width/height."""
        w, h = self.orig_size
        return self.boxes / torch.tensor([w, h, w, h], dtype=self.boxes.dtype)

    @property
    def xywh(self) -> Tensor:
        """Centre x, centre y, width, height in pixels."""
        b = self.boxes
        return torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)

    @property
    def xywhn(self) -> Tensor:
        """Normalised centre/size (YOLO label format)."""
        w, h = self.orig_size
        return self.xywh / torch.tensor([w, h, w, h], dtype=self.boxes.dtype)

    @property
    def class_names(self) -> list[str]:
        return [self.names[i] if 0 <= i < len(self.names) else str(i) for i in self.labels.tolist()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "frame": self.frame,
            "width": self.orig_size[0],
            "height": self.orig_size[1],
            "detections": [
                {"label": int(lb), "name": name, "score": round(float(s), 5), "box": [round(float(v), 2) for v in b]}
                for lb, name, s, b in zip(
                    self.labels.tolist(), self.class_names, self.scores.tolist(), self.boxes.tolist()
                )
            ],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_yolo(self, conf: bool = False) -> str:
        """YOLO label lines, one per detection: ``class cx cy w h`` normalised to the image (``rtdetr train`` and
        Ultralytics read them as labels), with ``conf`` a sixth column, the score. Empty for no detections."""
        rows = zip(self.labels.tolist(), self.xywhn.tolist(), self.scores.tolist())
        return "".join(
            f"{lb} {' '.join(f'{v:.6f}' for v in box)}{f' {s:.5f}' if conf else ''}\n" for lb, box, s in rows
        )

    def plot(self) -> Image.Image:
        """The original image with the detections drawn (an image file whose result keeps no image, one that
        predict decoded shrunk, is read again at full resolution)."""
        image = self._original()
        return draw_detections(image, self.boxes.tolist(), self.labels.tolist(), self.scores.tolist(), self.names)

    def crops(self) -> list[Image.Image]:
        """Each detection's region of the original image, in score order: the box widened to whole pixels and
        clipped to the image, at least 1x1."""
        image = self._original()
        w, h = image.size
        out = []
        for x0, y0, x1, y1 in self.boxes.tolist():
            left, top = min(max(math.floor(x0), 0), w - 1), min(max(math.floor(y0), 0), h - 1)
            right, bottom = max(min(math.ceil(x1), w), left + 1), max(min(math.ceil(y1), h), top + 1)
            out.append(image.crop((left, top, right, bottom)))
        return out

    def _original(self) -> Image.Image:
        """The original image: the one kept, else the file read again at full resolution."""
        image = self.image
        if image is None and self.path is not None and self.frame is None and "://" not in self.path:
            from rtdetr.data.dataset import load_image

            if not Path(self.path).is_file():
                raise ValueError(f"{self.path}: no such file now, and this result keeps no image (predict keeps none "
                                 "of a file it decoded shrunk): drawing it reads the file again")  # fmt: skip
            image = load_image(self.path)
            if image.size != tuple(self.orig_size):
                raise ValueError(f"{self.path} is {image.size[0]}x{image.size[1]} now, not the "
                                 f"{self.orig_size[0]}x{self.orig_size[1]} image it was when detected")  # fmt: skip
        if image is None:
            raise ValueError("this result keeps no image (predict with keep_images=True)")
        return image

    def save(self, path: str | Path) -> Path:
        """Save the drawn image (``.jpg``/``.png``), the JSON (``.json``) or YOLO label lines (``.txt``)."""
        p = Path(path)
        ext = p.suffix.lower()
        if ext not in Image.registered_extensions() and ext not in (".json", ".txt"):
            raise ValueError(
                f"{p}: save as an image (.jpg, .png, ...), as .json or as .txt (YOLO labels), not "
                f"{ext or 'no extension'}"
            )
        p.parent.mkdir(parents=True, exist_ok=True)
        if ext == ".json":
            p.write_text(self.to_json(indent=2))
        elif ext == ".txt":
            p.write_text(self.to_yolo())
        else:
            self.plot().save(p)
        return p

    def to_supervision(self) -> Any:
        """``supervision.Detections`` (needs ``pip install supervision``)."""
        try:
            import supervision as sv
        except ImportError:
            raise ImportError("to_supervision() needs the 'supervision' package (pip install supervision)") from None
        return sv.Detections(
            xyxy=self.boxes.cpu().numpy(),
            confidence=self.scores.cpu().numpy(),
            class_id=self.labels.cpu().numpy(),
            data={"class_name": self.class_names},
        )
