"""The HTTP service through FastAPI's TestClient: results equal the Python API; every bad request is a clear
4xx, never a 500."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rtdetr.api import RTDETR
from rtdetr.serve import ServeConfig, create_app
from rtdetr.serve.app import warm_up_batches

from .conftest import NAMES, image_bytes


@pytest.fixture()
def client(detector: RTDETR):
    with TestClient(create_app(detector, ServeConfig(max_upload_mb=1, max_pixels=1_000_000))) as c:
        yield c


def test_health_info_and_page(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["class_names"] == NAMES
    assert info["decoder_layers"] == 2 and info["decoder_depth"] == 2
    assert info["image_size"] == [64, 64] and info["backend"] == "pytorch" and info["compiled"] is None
    assert info["limits"]["max_upload_bytes"] == 1024 * 1024
    page = client.get("/")
    assert page.status_code == 200 and 'id="canvas"' in page.text and "/predict" in page.text


def test_served_at_another_size_as_the_python_api_runs_at_it(detector: RTDETR) -> None:
    data = image_bytes()
    with TestClient(create_app(detector, image_size=(96, 128))) as c:
        assert c.get("/info").json()["image_size"] == [96, 128]
        served = c.post("/predict?conf=0&max_det=5", content=data).json()["detections"]
    at_size = detector.predict(Image.open(io.BytesIO(data)), conf=0.0, max_det=5, image_size=(96, 128))[0]
    default = detector.predict(Image.open(io.BytesIO(data)), conf=0.0, max_det=5)[0]
    boxes = [d["box"] for d in served]
    assert [d["score"] for d in served] == pytest.approx(at_size.scores.tolist(), abs=1e-4)
    assert boxes == [pytest.approx(b, abs=0.02) for b in at_size.boxes.tolist()]
    assert boxes != [pytest.approx(b, abs=0.02) for b in default.boxes.tolist()]  # the size matters to this model


def test_predict_matches_the_python_api(client: TestClient, detector: RTDETR) -> None:
    data = image_bytes()
    r = client.post("/predict?conf=0", files={"image": ("a.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"name": "a.jpg", "width": 120, "height": 90}
    ref = detector.predict(Image.open(io.BytesIO(data)), conf=0.0)[0]
    assert len(body["detections"]) == len(ref) > 0
    for d, score, box, label in zip(body["detections"], ref.scores.tolist(), ref.boxes.tolist(), ref.labels.tolist()):
        assert d["label"] == label and d["name"] == NAMES[label]
        assert d["score"] == pytest.approx(score, abs=1e-4)
        assert d["box"] == pytest.approx(box, abs=0.02)
        assert 0 <= d["box"][0] <= d["box"][2] <= 120 and 0 <= d["box"][1] <= d["box"][3] <= 90
    # the raw body works too, and the filters apply
    r2 = client.post("/predict?conf=0&max_det=3&classes=0,2", content=data, headers={"content-type": "image/jpeg"})
    dets = r2.json()["detections"]
    assert len(dets) <= 3 and all(d["label"] in (0, 2) for d in dets)
    assert r2.json()["timing_ms"]["total"] > 0
    by_name = client.post("/predict?conf=0&max_det=3&classes=Circle,triangle", content=data)
    assert by_name.status_code == 200 and by_name.json()["detections"] == dets  # names select the same classes


def test_a_class_filter_gets_the_best_of_those_classes(detector: RTDETR) -> None:
    """``classes=c`` returns the best ``c`` boxes over all queries, as the Python API does, also when ``c`` is
    not among the service's best ``max_det`` of all classes (it returned those filtered, often nothing)."""
    data = image_bytes()
    img = Image.open(io.BytesIO(data))
    with TestClient(create_app(detector, ServeConfig(max_det=4))) as c:
        top = [d["label"] for d in c.post("/predict?conf=0", content=data).json()["detections"]]
        rare = min(range(3), key=top.count)
        assert top.count(rare) < 4
        got = c.post(f"/predict?conf=0&classes={rare}", content=data).json()["detections"]
    ref = detector.predict(img, conf=0.0, max_det=4, classes=[rare])[0]
    assert [d["label"] for d in got] == ref.labels.tolist() == [rare] * 4
    assert [d["score"] for d in got] == pytest.approx(ref.scores.tolist(), abs=1e-4)


def test_mixed_class_filters_share_one_batch(detector: RTDETR) -> None:
    """Concurrent requests with different class filters (and none) run in one batch, one forward pass, and each
    gets the Python API's answer for its own image and classes (they were split into a batch per class set)."""
    from concurrent.futures import ThreadPoolExecutor

    queries = ["", "&classes=0", "&classes=2", "&classes=1,2", "&classes=triangle"]
    images = [image_bytes(seed=k) for k in range(len(queries))]
    with TestClient(create_app(detector, ServeConfig(max_det=4, max_wait_ms=400))) as c:
        with ThreadPoolExecutor(len(queries)) as pool:
            posts = [pool.submit(c.post, f"/predict?conf=0{q}", content=d) for q, d in zip(queries, images)]
            got = [p.result().json()["detections"] for p in posts]
        stats = c.get("/info").json()["stats"]
    assert stats == {"batches": 1, "images": len(queries), "pending": 0}
    for q, data, dets in zip(queries, images, got):
        keep = [{"0": 0, "1": 1, "2": 2, "triangle": 2}[n] for n in q.partition("=")[2].split(",") if n] or None
        ref = detector.predict(Image.open(io.BytesIO(data)), conf=0.0, max_det=4, classes=keep)[0]
        assert [d["label"] for d in dets] == ref.labels.tolist(), q
        assert [d["score"] for d in dets] == pytest.approx(ref.scores.tolist(), abs=1e-4), q
        assert np.allclose([d["box"] for d in dets], ref.boxes.numpy(), atol=0.02), q


def test_iphone_heic_upload_without_a_name(client: TestClient, detector: RTDETR) -> None:
    """A HEIC photo as the raw body (no file name to go by) or a form-labelled body (curl --data-binary) is told
    by its bytes and decoded through pillow-heif; the detections equal the API's on the same pixels."""
    import pillow_heif

    from rtdetr.data.records import is_heif

    img = Image.open(io.BytesIO(image_bytes()))
    buf = io.BytesIO()
    pillow_heif.from_pillow(img).save(buf, quality=-1)  # lossless
    heic = buf.getvalue()
    assert is_heif(io.BytesIO(heic)) and not is_heif(io.BytesIO(image_bytes()))
    for headers in ({"content-type": "image/heic"}, {"content-type": "application/x-www-form-urlencoded"}):
        r = client.post("/predict?conf=0", content=heic, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["image"]["width"] == 120
    pillow_heif.register_heif_opener()
    ref = detector.predict(Image.open(io.BytesIO(heic)), conf=0.0)[0]
    assert [d["label"] for d in r.json()["detections"]] == ref.labels.tolist()


def test_a_model_giving_nan_boxes_answers_200_without_them(detector: RTDETR) -> None:
    """JSON has no NaN: such detections were a 500 ("Out of range float values are not JSON compliant")."""
    import torch

    with torch.no_grad():
        detector.model.decoder.dec_bbox_head[-1].layers[-1].bias.fill_(float("nan"))
    with TestClient(create_app(detector)) as c:
        r = c.post("/predict?conf=0&draw=true", content=image_bytes())
    assert r.status_code == 200, r.text
    assert r.json()["detections"] == [] and r.json()["drawn"].startswith("data:image/jpeg;base64,")


def test_draw_and_decoder_depth(client: TestClient) -> None:
    data = image_bytes("PNG")
    r = client.post("/predict?conf=0&draw=true&decoder_depth=1", files={"image": ("b.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decoder_depth"] == 1
    head, b64 = body["drawn"].split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(b64))).size == (120, 90)
    full = client.post("/predict?conf=0", files={"image": ("b.png", data, "image/png")}).json()
    assert full["decoder_depth"] == 2
    assert [d["score"] for d in full["detections"]] != [d["score"] for d in body["detections"]]


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"content": b""}, 400, "empty upload"),
        (
            {"content": b"hello, not an image", "headers": {"content-type": "text/plain"}},
            400,
            "upload: cannot decode image (not an image format Pillow reads)",
        ),
        ({"files": {"image": ("x.jpg", image_bytes()[:300], "image/jpeg")}}, 400, "x.jpg"),
        ({"files": {"other": ("x.txt", b"abc", "text/plain"), "more": ("y.txt", b"d", "text/plain")}}, 400, "'image'"),
        ({"data": {"image": "text field"}}, 400, "multipart"),
        ({"content": b"--xx\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=xx"}}, 400, ""),
        ({"content": b"\0" * (1024 * 1024 + 1)}, 413, "over the limit"),
    ],
)
def test_bad_uploads_are_4xx_with_a_reason(client: TestClient, kwargs: dict, status: int, needle: str) -> None:
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_too_many_pixels_refused_before_decoding(client: TestClient) -> None:
    buf = io.BytesIO()
    Image.new("L", (1200, 1000)).save(buf, "PNG")  # 1.2 MP > 1 MP limit, yet a tiny file
    r = client.post("/predict", files={"image": ("big.png", buf.getvalue(), "image/png")})
    assert r.status_code == 413 and "1200x1000" in r.json()["detail"]


def test_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks():
        for _ in range(20):
            yield b"\xff" * 100_000

    r = client.post("/predict", content=chunks(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("conf=1.5", "conf"),
        ("conf=abc", "conf"),
        ("max_det=0", "max_det"),
        ("decoder_depth=0", "decoder_depth"),
        ("decoder_depth=9", "over the model's 2 layers"),
        ("classes=1,x", "no class named 'x'"),
        ("classes=squre", "did you mean 'square'?"),
        ("classes=7", "[7]"),
    ],
)
def test_bad_parameters_are_4xx(client: TestClient, query: str, needle: str) -> None:
    r = client.post(f"/predict?{query}", files={"image": ("a.jpg", image_bytes(), "image/jpeg")})
    assert 400 <= r.status_code < 500, r.text
    assert needle in r.json()["detail"]


def test_busy_service_answers_503(detector: RTDETR) -> None:
    app = create_app(detector, ServeConfig(max_pending=1))
    with TestClient(app) as c:
        batcher = next(
            cell.cell_contents
            for route in app.routes
            if getattr(route, "name", "") == "health"
            for cell in (route.endpoint.__closure__ or ())
            if type(cell.cell_contents).__name__ == "MicroBatcher"
        )
        batcher.pending = 1  # one request in flight
        r = c.post("/predict", content=image_bytes())
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        batcher.pending = 0
        assert c.post("/predict", content=image_bytes()).status_code == 200


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=400),
        st.builds(lambda cut: image_bytes()[:cut], st.integers(0, 2000)),
        st.builds(
            lambda b, pos: b[:pos] + b"\x00\xff" + b[pos + 2 :], st.just(image_bytes("PNG")), st.integers(0, 500)
        ),
    ),
    ctype=st.sampled_from(["image/jpeg", "application/octet-stream", "multipart/form-data", "text/plain", ""]),
)
def test_fuzzed_uploads_never_500(client: TestClient, body: bytes, ctype: str) -> None:
    r = client.post("/predict", content=body, headers={"content-type": ctype} if ctype else {})
    assert r.status_code in (200, 400, 413), r.text
    assert ("detections" in r.json()) == (r.status_code == 200)


def test_cli_serve_rejects_bad_settings(capsys: pytest.CaptureFixture) -> None:
    from rtdetr.cli import main

    assert main(["serve", "rtdetr_r18vd", "--max-batch", "0"]) == 1
    assert "--max-batch must be >= 1" in capsys.readouterr().err
    assert main(["serve", "rtdetr_r18vd", "--max-upload-mb", "0"]) == 1
    assert "--max-upload-mb" in capsys.readouterr().err
    assert main(["serve", "rtdetr_r18vd", "--decoder-depth", "9"]) == 1  # checked before the server starts
    assert "decoder depth must be in 1..3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["serve", "rtdetr_r18vd", "--port", "http"])
    assert e.value.code == 2
    import socket

    with socket.socket() as taken:  # another service on the port: said before the model loads, not after start-up
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "rtdetr_r18vd", "--port", str(port)]) == 1
    assert f"127.0.0.1:{port}: cannot listen there (Address already in use)" in capsys.readouterr().err


def test_curl_data_binary_upload_is_sniffed(client: TestClient) -> None:
    """`curl --data-binary @img.jpg` (the README's raw-body example) sends a form content type: the bytes decide."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert client.post("/predict", content=image_bytes(), headers=form).status_code == 200
    r = client.post("/predict", content=b"a=1&b=2", headers=form)
    assert r.status_code == 400
    # the reason first: the text file a user sent by mistake is not an image (it read as a how-to-send hint only)
    assert r.json()["detail"].startswith("upload: not an image (a 7-byte body sent as a form, starting b'a=1&b=2')")
    assert "multipart/form-data" in r.json()["detail"]


def test_error_details_name_the_upload_not_an_object(client: TestClient) -> None:
    r = client.post("/predict", content=b"hello, not an image", headers={"content-type": "image/jpeg"})
    assert r.status_code == 400 and "object at 0x" not in r.json()["detail"]


def test_huge_header_reports_our_pixel_limit() -> None:
    """A PNG header claiming more pixels than Pillow's own bomb limit: the message states the caller's limit."""
    import struct
    import zlib

    from rtdetr.data.dataset import ImageTooLarge, load_image

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0))  # 1.6 G pixels
    png = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b"")
    with pytest.raises(ImageTooLarge, match="more pixels than the limit of 1000000"):
        load_image(io.BytesIO(png), name="huge.png", max_pixels=1_000_000)


def test_a_large_phone_photo_decodes_reduced_and_answers_in_its_full_frame(detector: RTDETR) -> None:
    """A 1600x1200 JPEG stored turned (EXIF orientation 6) as phones save them: decoded at a reduced JPEG scale
    (it only has to cover twice the 64x64 input), reported and answered in the full picture's frame as shown,
    with the detections of the Python API on the full-resolution image."""
    shown = Image.open(io.BytesIO(image_bytes(size=(1600, 1200), seed=3)))
    stored = shown.transpose(Image.Transpose.ROTATE_90)
    exif = stored.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif)
    with TestClient(create_app(detector, ServeConfig(max_pixels=4_000_000))) as c:
        r = c.post("/predict?conf=0", content=buf.getvalue(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"]["width"] == 1600 and body["image"]["height"] == 1200
    ref = detector.predict(Image.open(io.BytesIO(buf.getvalue())), conf=0.0)[0]  # full decode, EXIF applied
    assert ref.orig_size == (1600, 1200)
    scores = [d["score"] for d in body["detections"]]
    assert scores[:20] == pytest.approx(ref.scores.tolist()[:20], abs=2e-3)
    boxes = [v for d in body["detections"][:20] for v in d["box"]]
    assert boxes == pytest.approx(ref.boxes[:20].flatten().tolist(), abs=4.0)  # pixels of 1600x1200


def test_uploads_are_decoded_as_the_run_loaded_its_images(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service decoded every upload to cover twice the input whatever the run had set: now as the run loaded
    its images (``data.shrink_above``; 0 = full resolution), as ``predict`` and ``val`` do."""
    import torch

    import rtdetr.serve.app as app_module
    from rtdetr.convert.checkpoint import read_checkpoint

    raw = read_checkpoint(tiny_checkpoint)
    raw["run_config"] = {"data": {"train": "data.json", "shrink_above": 0.0}}
    torch.save(raw, tmp_path / "full.pth")
    covers: list = []
    real = app_module.load_image_covering
    monkeypatch.setattr(app_module, "load_image_covering", lambda d, c, **k: covers.append(c) or real(d, c, **k))
    data = image_bytes(size=(400, 300))
    for path in (tmp_path / "full.pth", tiny_checkpoint):
        with TestClient(create_app(RTDETR(path, device="cpu"))) as c:
            assert c.post("/predict", content=data).status_code == 200
    assert covers == [None, (128, 128)]


def test_cli_serve_size(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """``rtdetr serve --size`` reaches the service (the server itself stubbed: the app it would run is kept)."""
    import socket

    import uvicorn

    from rtdetr.cli import main

    apps: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["serve", str(tiny_checkpoint), "--size", "128x96", "--port", str(port)]) == 0
    assert ") at 128x96 on http://127.0.0.1:" in capsys.readouterr().out  # the start-up line says the size
    with TestClient(apps[0]) as c:
        assert c.get("/info").json()["image_size"] == [96, 128]


def test_requests_run_without_autograd(detector: RTDETR) -> None:
    """The batch runs on the batcher's own thread, where the caller's grad mode does not reach: without inference
    mode there, every request recorded its forward pass for autograd and kept the activations alive."""
    modes: list[bool] = []
    detector.model.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    with TestClient(create_app(detector)) as c:
        assert c.post("/predict?conf=0", content=image_bytes()).status_code == 200
    assert modes == [True]


@pytest.mark.parametrize("max_batch, sizes", [(8, [1, 2, 4, 8]), (6, [1, 2, 4, 6]), (1, [1]), (5, [1, 2, 4, 5])])
def test_warm_up_batches(max_batch: int, sizes: list[int]) -> None:
    assert warm_up_batches(max_batch) == sizes


def test_a_compiled_service_compiles_before_its_first_request(
    tiny_checkpoint: Path, capsys: pytest.CaptureFixture, compile_calls: list
) -> None:
    """``rtdetr serve --compile``: each batch size compiles once (about 30 s on 2 CPU cores), at start-up rather
    than in a request; a partly filled batch then runs padded to the next compiled size."""

    def batches() -> list[tuple[int, bool]]:
        return [(c.shape[0], c.inference) for c in compile_calls]

    det = RTDETR(tiny_checkpoint, device="cpu", fuse=True, compile="default")
    app = create_app(det, ServeConfig(max_batch=6), image_size=(64, 96))
    assert batches() == []
    with TestClient(app) as c:
        assert batches() == [(1, True), (2, True), (4, True), (6, True)]  # compiled under the mode requests run in
        assert "compiling the model for batches of 1, 2, 4, 6 at 96x64" in capsys.readouterr().err
        r = c.post("/predict?conf=0&max_det=5", content=image_bytes())
        deep = c.post("/predict?conf=0&max_det=5&decoder_depth=1", content=image_bytes())
        compiled = c.get("/info").json()["compiled"]
    assert compiled == {"mode": "default", "batch_sizes": [1, 2, 4, 6], "decoder_depth": 2}
    assert r.status_code == 200 and len(r.json()["detections"]) == 5
    assert deep.status_code == 200 and deep.json()["decoder_depth"] == 1
    # at the size served; another depth runs uncompiled rather than compile inside a request
    assert batches()[4:] == [(1, True)] and {c.shape[1:] for c in compile_calls} == {(3, 64, 96)}


def test_a_compile_that_fails_at_start_up_says_so_in_a_line(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a working C++ compiler inductor fails with a hundred-line traceback; the service stops at start-up
    with its first line and what to do."""

    def fake_compile(module: torch.nn.Module, **kwargs: object) -> object:
        def run(x: torch.Tensor) -> object:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nand a long story after it")

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    det = RTDETR(tiny_checkpoint, device="cpu", fuse=True, compile="default")
    msg = r"model failed \(InvalidCxxCompiler: No working C\+\+ compiler found\); serve it without --compile"
    with pytest.raises(RuntimeError, match=msg), TestClient(create_app(det)):
        pass
