"""Drawn detections: captions readable on large photos and class names drawn in any script."""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from rtdetr import viz
from rtdetr.viz import caption_font, covers, draw_detections, line_style


@pytest.fixture(autouse=True)
def _fresh_font_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    viz._font_path.cache_clear()
    monkeypatch.delenv("RTDETR_FONT", raising=False)


def _caption_pixels(img: Image.Image, color: tuple[int, int, int]) -> int:
    return int((np.asarray(img) == np.array(color, np.uint8)).all(-1).sum())


def test_lines_and_captions_grow_with_the_image() -> None:
    assert line_style((640, 480)) == (2, 11)
    assert line_style((4032, 3024)) == (11, 42)
    color = viz.class_color(0)
    small = draw_detections(Image.new("RGB", (640, 480)), [[100, 100, 300, 300]], [0], [0.9], ["person"])
    large = draw_detections(Image.new("RGB", (4032, 3024)), [[600, 600, 1800, 1800]], [0], [0.9], ["person"])
    # box outline + caption background: the caption is about as large relative to the image on both
    assert _caption_pixels(large, color) > 10 * _caption_pixels(small, color)


def _font_with(text: str) -> str:
    for path in viz.FONT_CANDIDATES:
        if Path(path).is_file() and covers(ImageFont.truetype(path, 16), text):
            return path
    pytest.skip(f"no installed font draws {text!r}")


def test_names_in_other_scripts_get_a_font_that_has_their_letters() -> None:
    names = ["кошка", "σκύλος"]
    path = _font_with("".join(names))
    default = ImageFont.load_default(16)
    assert not covers(default, "кошка")  # what drawing used before: every letter a box
    assert covers(default, "person 0.93") and caption_font("person 0.93", 16) is not None
    font = caption_font("".join(names), 16)
    assert isinstance(font, ImageFont.FreeTypeFont) and font.path == path and covers(font, "".join(names))
    # drawn: two names of as many letters look different (in Pillow's own font both are five identical boxes)
    box = [[50, 60, 200, 200]]
    cat = np.asarray(draw_detections(Image.new("RGB", (320, 240)), box, [0], [0.5], ["кошка"]))
    aaa = np.asarray(draw_detections(Image.new("RGB", (320, 240)), box, [0], [0.5], ["ааааа"]))
    assert (cat != aaa).any()


def test_without_a_font_other_scripts_draw_as_identical_boxes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broken variant of the test above: with no font to find, the two captions come out the same."""
    monkeypatch.setattr(viz, "FONT_CANDIDATES", ())
    monkeypatch.setattr(viz, "_fontconfig_match", lambda text: None)
    box = [[50, 60, 200, 200]]
    cat = np.asarray(draw_detections(Image.new("RGB", (320, 240)), box, [0], [0.5], ["кошка"]))
    aaa = np.asarray(draw_detections(Image.new("RGB", (320, 240)), box, [0], [0.5], ["ааааа"]))
    assert (cat == aaa).all()


def test_ascii_names_never_look_for_a_font(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(viz, "_fontconfig_match", lambda text: pytest.fail("looked for a font"))
    monkeypatch.setattr(viz, "FONT_CANDIDATES", ())
    assert caption_font("person car 0.25", 11) is not None


def test_no_font_for_the_names_warns_once_naming_the_letters(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(viz, "FONT_CANDIDATES", ())
    monkeypatch.setattr(viz, "_fontconfig_match", lambda text: None)
    with caplog.at_level(logging.WARNING, logger="rtdetr"):
        for _ in range(3):
            draw_detections(Image.new("RGB", (64, 64)), [[1, 1, 30, 30]], [0], [0.5], ["猫", "狗"])
    warnings = [r.getMessage() for r in caplog.records if "no font found" in r.getMessage()]
    assert len(warnings) == 1 and "狗猫" in warnings[0] and "RTDETR_FONT" in warnings[0]


def test_rtdetr_font_is_used_first(monkeypatch: pytest.MonkeyPatch) -> None:
    path = _font_with("кошка")
    monkeypatch.setattr(viz, "FONT_CANDIDATES", ())
    monkeypatch.setattr(viz, "_fontconfig_match", lambda text: None)
    monkeypatch.setenv("RTDETR_FONT", path)
    font = caption_font("кошка", 20)
    assert isinstance(font, ImageFont.FreeTypeFont) and font.path == path and font.size == 20
