"""Drawing detections on images (Pillow only)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["class_color", "draw_detections"]


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per class id."""
    h = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image: Image.Image,
    boxes: Sequence[Sequence[float]],
    labels: Sequence[int],
    scores: Sequence[float],
    names: Sequence[str] | None = None,
    width: int = 2,
) -> Image.Image:
    """A copy of ``image`` with xyxy ``boxes`` (absolute pixels) drawn and captioned ``name score``."""
    img = image.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for box, label, score in zip(boxes, labels, scores):
        color = class_color(int(label))
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=color, width=width)
        name = names[int(label)] if names is not None and 0 <= int(label) < len(names) else str(int(label))
        text = f"{name} {float(score):.2f}"
        tb = draw.textbbox((0, 0), text, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        ty = y0 - th - 4 if y0 - th - 4 >= 0 else y0
        draw.rectangle([x0, ty, x0 + tw + 4, ty + th + 4], fill=color)
        draw.text((x0 + 2, ty + 1), text, fill=(0, 0, 0), font=font)
    return img
