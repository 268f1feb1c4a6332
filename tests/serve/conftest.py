from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from rtdetr.api import RTDETR

from ..engine.conftest import TINY_MODEL

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")

NAMES = ["circle", "square", "triangle"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3-class model at 64x64 with random weights, saved as one of our checkpoints."""
    import torch

    from rtdetr.convert import save_model
    from rtdetr.models import create_model

    torch.manual_seed(0)
    model = create_model("rtdetr_r18vd", num_classes=3, **TINY_MODEL)
    return save_model(model, tmp_path_factory.mktemp("serve") / "tiny.pth", {"class_names": NAMES})


@pytest.fixture()
def detector(tiny_checkpoint: Path) -> RTDETR:
    det = RTDETR(tiny_checkpoint, device="cpu")
    det.model.deploy()
    return det


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (120, 90), seed: int = 0) -> bytes:
    """A picture with a gradient background, mild noise and a few coloured shapes, encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([90 + 80 * xx / w, 110 + 60 * yy / h, 150 - 50 * xx / w], -1) + rng.normal(0, 6, (h, w, 3))
    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for k in range(4):
        x0, y0 = int(rng.integers(0, w * 3 // 4)), int(rng.integers(0, h * 3 // 4))
        x1, y1 = x0 + int(rng.integers(w // 10, w // 4)), y0 + int(rng.integers(h // 10, h // 4))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if k % 2 else draw.rectangle)([x0, y0, x1, y1], fill=color)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()
