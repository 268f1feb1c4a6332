"""Drawing detections on images (Pillow only).

Captions and lines scale with the image (a 12-megapixel photo gets captions as readable as a 640 one), and class
names in any script are drawn in a font that has their letters: Pillow's own font for ASCII names, else the first
installed font that covers every name (Noto CJK, DejaVu, Microsoft YaHei, PingFang, ... or fontconfig's choice),
or the one ``RTDETR_FONT`` names. Where none covers them, a one-time warning says which letters and how to fix it.
"""

from __future__ import annotations

import colorsys
import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["caption_font", "class_color", "covers", "draw_detections", "line_style"]

log = logging.getLogger("rtdetr")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

#: fonts tried, in order, for names Pillow's own font cannot draw (Linux, macOS, Windows)
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/System/Library/Fonts/AppleSDGothicNeo.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
    "C:/Windows/Fonts/meiryo.ttc",
    "C:/Windows/Fonts/malgun.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
_MISSING = "\U0010fffd"  # a private-use code point no font draws: its rendering is the font's "missing" glyph


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per class id."""
    h = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def line_style(size: tuple[int, int]) -> tuple[int, int]:
    """Box line width and caption font size (pixels) for an image of ``size`` (w, h): 2 and 11 up to about
    700x500, growing with the image's mean side (a 4032x3024 photo: 11 and 42)."""
    mean_side = (size[0] + size[1]) / 2
    return max(2, round(mean_side * 0.003)), max(11, round(mean_side * 0.012))


def _rendered(font: Font, text: str) -> bytes:
    img = Image.new("L", (4 * max(1, int(getattr(font, "size", 10))),) * 2)
    ImageDraw.Draw(img).text((0, 0), text, fill=255, font=font)
    return np.asarray(img).tobytes()


def covers(font: Font, text: str) -> bool:
    """Whether ``font`` has a glyph for every non-space character of ``text`` (a character drawn as the font's
    "missing" box, or as nothing, is not covered)."""
    missing = _rendered(font, _MISSING)
    blank = _rendered(font, " ")
    return all(_rendered(font, ch) not in (missing, blank) for ch in set(text) if not ch.isspace())


def _fontconfig_match(text: str) -> str | None:
    """fontconfig's font for the characters of ``text`` (``fc-match :charset=...``), where fontconfig exists."""
    exe = shutil.which("fc-match")
    if exe is None:
        return None
    charset = " ".join(f"{ord(c):x}" for c in sorted(set(text)) if not c.isspace())
    try:
        out = subprocess.run([exe, "-f", "%{file}", f":charset={charset}"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def caption_font(text: str, size: int = 11) -> Font:
    """A font of ``size`` pixels that draws every character of ``text`` (e.g. a model's class names): Pillow's own
    for ASCII text and wherever it covers the rest, else the file ``RTDETR_FONT`` names, else the first of
    :data:`FONT_CANDIDATES` or fontconfig's match that covers it; failing all, Pillow's own, with a warning (once)
    naming what it cannot draw."""
    path = _font_path("".join(sorted({c for c in text if ord(c) > 127})))
    return _truetype(path, size) if path else ImageFont.load_default(size)


@functools.lru_cache(maxsize=32)
def _truetype(path: str, size: int) -> Font:
    return ImageFont.truetype(path, size)


@functools.lru_cache(maxsize=32)
def _font_path(chars: str) -> str | None:
    """The font file for the non-ASCII characters ``chars`` (None: Pillow's own font), chosen once per set."""
    if not chars or covers(ImageFont.load_default(16), chars):
        return None
    tried: list[str] = []
    env = os.environ.get("RTDETR_FONT")
    paths = [env] if env else []
    paths += [p for p in FONT_CANDIDATES if Path(p).is_file()]
    match = _fontconfig_match(chars)
    paths += [match] if match else []
    for path in dict.fromkeys(paths):
        try:
            font = ImageFont.truetype(path, 16)
        except OSError:
            tried.append(f"{path} (unreadable)")
            continue
        if covers(font, chars):
            return path
        tried.append(path)
    default = ImageFont.load_default(16)
    missing = "".join(c for c in chars if not covers(default, c))
    log.warning(
        "no font found that draws the class-name characters %s (they show as boxes): install one (e.g. Noto Sans "
        "CJK: apt install fonts-noto-cjk) or set RTDETR_FONT=/path/to/font.ttf%s",
        missing[:20], f"; tried {', '.join(tried)}" if tried else "",
    )  # fmt: skip
    return None


def draw_detections(
    image: Image.Image,
    boxes: Sequence[Sequence[float]],
    labels: Sequence[int],
    scores: Sequence[float],
    names: Sequence[str] | None = None,
    width: int | None = None,
) -> Image.Image:
    """A copy of ``image`` with xyxy ``boxes`` (absolute pixels) drawn and captioned ``name score``; ``width``
    (default: :func:`line_style`'s for the image) is the box line width."""
    img = image.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    auto_width, font_size = line_style(img.size)
    width = auto_width if width is None else width
    font = caption_font("".join(names or ()), font_size)  # all names: one choice per model, not per image
    pad = max(2, font_size // 5)
    for box, label, score in zip(boxes, labels, scores):
        color = class_color(int(label))
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=color, width=width)
        name = names[int(label)] if names is not None and 0 <= int(label) < len(names) else str(int(label))
        text = f"{name} {float(score):.2f}"
        tb = draw.textbbox((0, 0), text, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        ty = y0 - th - 2 * pad if y0 - th - 2 * pad >= 0 else y0
        draw.rectangle([x0, ty, x0 + tw + 2 * pad, ty + th + 2 * pad], fill=color)
        draw.text((x0 + pad - tb[0], ty + pad - tb[1]), text, fill=(0, 0, 0), font=font)
    return img
