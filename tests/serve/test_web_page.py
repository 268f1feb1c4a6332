"""End-to-end: the web page in headless Debian Chromium against a live server on loopback. Upload an image,
see the boxes drawn in the classes' colours, move the threshold, change the decoder depth, choose classes, upload
a bad file."""

from __future__ import annotations

import colorsys
import contextlib
import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtdetr.api import RTDETR
from rtdetr.serve import ServeConfig, create_app

from .conftest import NAMES, image_bytes

CHROMIUM, DRIVER = (
    shutil.which("chromium") or "/usr/bin/chromium",
    shutil.which("chromedriver") or "/usr/bin/chromedriver",
)
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()),
    reason="Debian chromium and chromium-driver are not installed (.ci/run installs them: apt-get install chromium "
    "chromium-driver)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serving(detector: RTDETR) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(detector, ServeConfig()), "127.0.0.1", port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline and th.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(10)


@pytest.fixture()
def server(detector: RTDETR) -> Iterator[str]:
    with _serving(detector) as url:
        yield url


@pytest.fixture()
def browser(tmp_path: Path):
    os.environ.setdefault("SE_AVOID_STATS", "true")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1280,900", "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _color(label: int) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb((label * 0.618033988749895) % 1.0, 0.85, 0.95)
    return np.array([int(r * 255), int(g * 255), int(b * 255)])


def _wait(driver, cond, what: str, timeout: float = 30.0):  # noqa: ANN001, ANN202
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: cond(d), message=what)


def test_upload_draw_threshold_depth_and_error(server: str, browser, tmp_path: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    img = tmp_path / "street.png"
    img.write_bytes(image_bytes("PNG", size=(480, 360), seed=4))
    browser.get(server + "/")
    _wait(browser, lambda d: "classes" in d.find_element(By.ID, "model").text, "model info shown")
    assert "rtdetr_r18vd · 3 classes · 64×64 · pytorch" in browser.find_element(By.ID, "model").text
    depth = browser.find_element(By.ID, "depth")
    assert [o.text for o in depth.find_elements(By.TAG_NAME, "option")] == ["1 layer", "2 layers"]

    # threshold 0 keeps every detection the server returned (random weights: scores are low but present)
    browser.execute_script(
        "const c = document.getElementById('conf'); c.value = '0'; c.dispatchEvent(new Event('input'));"
    )
    browser.find_element(By.ID, "file").send_keys(str(img))
    _wait(browser, lambda d: "detection" in d.find_element(By.ID, "status").text, "detections listed")
    status = browser.find_element(By.ID, "status").text
    n_all = int(status.split()[0])
    assert n_all > 0 and "decoder depth 2" in status
    rows = browser.find_elements(By.CSS_SELECTOR, "#dets tr")
    assert len(rows) == n_all
    canvas = browser.find_element(By.ID, "canvas")
    assert (canvas.get_property("width"), canvas.get_property("height")) == (480, 360)

    # screenshot: the canvas shows the picture with label boxes filled in the detections' class colours
    shot_path = tmp_path / "page.png"
    browser.save_screenshot(str(shot_path))
    keep = os.environ.get("RTDETR_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot_path, Path(keep) / "web_page.png")
    shot = np.asarray(Image.open(shot_path).convert("RGB")).astype(int)
    r = canvas.rect
    region = shot[int(r["y"]) : int(r["y"] + r["height"]), int(r["x"]) : int(r["x"] + r["width"])]
    assert region.shape[:2] == (360, 480)
    picture = np.asarray(Image.open(io.BytesIO(image_bytes("PNG", size=(480, 360), seed=4))).convert("RGB"))
    changed = np.abs(region - picture).max(-1) > 30
    assert changed.mean() < 0.5, "the canvas does not show the uploaded picture"
    top = browser.find_element(By.CSS_SELECTOR, "#dets tr td").text  # best detection, drawn last (on top)
    colour = _color(["circle", "square", "triangle"].index(top))
    painted = (np.abs(region - colour).max(-1) <= 3) & changed
    assert painted.sum() > 100, f"the {top!r} label box is not drawn in its class colour"

    # the threshold filters on the page, without a new request
    def set_conf(v: float) -> None:
        browser.execute_script(
            f"const c = document.getElementById('conf'); c.value = '{v}'; c.dispatchEvent(new Event('input'));"
        )

    scores = sorted(float(t.text) for t in browser.find_elements(By.CSS_SELECTOR, "#dets tr td:last-child"))
    set_conf(1.0)
    assert browser.find_elements(By.CSS_SELECTOR, "#dets tr") == []
    assert browser.find_element(By.ID, "status").text.startswith("0 detections ≥ 1.00")
    set_conf(0.0)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#dets tr")) == n_all == len(scores)

    # decoder depth 1: a new request, reported back
    browser.execute_script(
        "const s = document.getElementById('depth'); s.value = '1'; s.dispatchEvent(new Event('change'));"
    )
    _wait(browser, lambda d: "decoder depth 1" in d.find_element(By.ID, "status").text, "depth 1 result")

    # choosing a class asks the server for that class's best boxes (a new request); none chosen: every class
    assert [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#classes option")] == NAMES

    def choose(values: list[str]) -> None:
        browser.execute_script(
            "const s = document.getElementById('classes');"
            "for (const o of s.options) o.selected = arguments[0].includes(o.value);"
            "s.dispatchEvent(new Event('change'));",
            values,
        )

    choose(["2"])
    _wait(browser, lambda d: "(1 chosen)" in d.find_element(By.ID, "classes-note").text, "class chosen")

    def rows() -> list[str]:  # read in one go: the table is redrawn when the answer comes
        return browser.execute_script(
            "return [...document.querySelectorAll('#dets tr td:first-child')].map((t) => t.textContent)"
        )

    _wait(browser, lambda d: rows() and set(rows()) == {"triangle"}, "only triangles listed")
    choose([])
    _wait(browser, lambda d: len(set(rows())) > 1, "every class listed again")

    # a file that is not an image: the server's reason is shown, the page keeps working
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    _wait(browser, lambda d: "400" in d.find_element(By.ID, "error").text, "error shown")
    assert "cannot decode image" in browser.find_element(By.ID, "error").text


def test_a_graph_shows_the_depth_it_runs(detector: RTDETR, browser, tmp_path: Path) -> None:  # noqa: ANN001
    """An ONNX graph exported at decoder depth 1: the depth list says "1 layer, fixed at export" (it said only
    "fixed at export") and the result line reports depth 1 (it said "fixed")."""
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from selenium.webdriver.common.by import By

    from rtdetr.export import export_onnx

    graph = export_onnx(detector.model, tmp_path / "d1.onnx", decoder_depth=1, check=False, class_names=NAMES).path
    img = tmp_path / "street.png"
    img.write_bytes(image_bytes("PNG", size=(160, 120), seed=4))
    with _serving(RTDETR(graph)) as url:
        browser.get(url + "/")
        _wait(browser, lambda d: "classes" in d.find_element(By.ID, "model").text, "model info shown")
        depth = browser.find_element(By.ID, "depth")
        assert [o.text for o in depth.find_elements(By.TAG_NAME, "option")] == ["1 layer, fixed at export"]
        assert not depth.is_enabled()
        browser.find_element(By.ID, "file").send_keys(str(img))
        _wait(browser, lambda d: "detection" in d.find_element(By.ID, "status").text, "detections listed")
        assert "decoder depth 1" in browser.find_element(By.ID, "status").text
