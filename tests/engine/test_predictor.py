from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rtdetr.engine.predictor import Predictor, iter_source
from rtdetr.engine.results import Results
from rtdetr.models import create_model


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    model = create_model("rtdetr_r18vd", num_classes=3, eval_spatial_size=[64, 64])
    return Predictor(model, ["a", "b", "c"], (64, 64), conf=0.0, max_det=5, batch_size=2)


def _images(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"im{i}.png"
        Image.fromarray((np.random.default_rng(i).random((40 + i, 50, 3)) * 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def test_sources(tmp_path: Path, predictor: Predictor) -> None:
    paths = _images(tmp_path / "imgs")
    assert [r.path for r in predictor(tmp_path / "imgs")] == [str(p) for p in paths]
    assert len(predictor(str(tmp_path / "imgs" / "*.png"))) == 3
    assert len(predictor([paths[0], Image.open(paths[1]), np.zeros((20, 30, 3), np.uint8), torch.rand(3, 16, 16)])) == 4
    r = predictor(paths[2])[0]
    assert r.orig_size == (50, 42) and len(r) == 5 and r.boxes.shape == (5, 4)
    assert (r.boxes[:, 2] <= 50 + 1e-3).all() and (r.boxes[:, 3] <= 42 + 1e-3).all()


def test_an_opened_pil_image_is_taken_as_its_file_is(tmp_path: Path, predictor: Predictor) -> None:
    """``predict(Image.open(p))`` equals ``predict(p)``: a phone photo's EXIF orientation is applied (the
    opened image keeps the tag; it used to be detected on turned) and a 16-bit PNG is scaled (it used to clip
    to white)."""
    rng = np.random.default_rng(5)
    stored = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    Image.fromarray(rng.integers(0, 4096, (30, 44), dtype=np.uint16)).save(tmp_path / "depth.png")
    for name, size in (("phone.jpg", (40, 56)), ("depth.png", (44, 30))):
        by_path, by_image = predictor(tmp_path / name)[0], predictor(Image.open(tmp_path / name))[0]
        assert by_path.orig_size == by_image.orig_size == size
        assert torch.equal(by_path.boxes, by_image.boxes) and torch.equal(by_path.scores, by_image.scores)


def test_array_and_tensor_pixels_keep_their_values() -> None:
    """Every accepted pixel type gives the same image; values outside its range raise instead of being clipped
    (an int array of 0..255 or a float array of 0..255 used to become a black-and-white image)."""
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    want = np.asarray(next(iter_source(rgb))[0])
    assert (want == rgb).all()
    same = [
        rgb.astype(np.int64),
        rgb.astype(np.float32) / 255,
        np.concatenate([rgb, np.full((6, 7, 1), 255, np.uint8)], -1),  # RGBA
        torch.from_numpy(rgb).permute(2, 0, 1),
        torch.from_numpy(rgb).permute(2, 0, 1).to(torch.int32),
        torch.from_numpy(rgb).permute(2, 0, 1).float() / 255,
        (torch.from_numpy(rgb).permute(2, 0, 1).double() / 255).requires_grad_(),
    ]
    for src in same:
        assert (np.asarray(next(iter_source(src))[0]) == want).all(), (type(src), src.dtype)
    gray = next(iter_source(rgb[..., 0].astype(np.uint16)))[0]
    assert (np.asarray(gray) == rgb[..., :1]).all()
    wide = rgb.astype(np.int32)
    wide[0, 0, 0] = 1000
    bad = [
        (r"array: integer pixels span \d+\.\.1000, expected 0\.\.255", wide),
        (r"array: float pixels span \d+\.\.\d+, expected 0\.\.1", np.full((4, 4, 3), 255.0, np.float32)),
        ("array: float pixels include NaN", np.full((4, 4, 3), np.nan, np.float32)),
        (r"array: integer pixels span -1\.\.", rgb.astype(np.int16) - 1 - rgb.min()),
        ("array: pixel type bool is not supported", np.ones((4, 4, 3), bool)),
        (r"tensor: float pixels span \d+\.\.\d+", torch.from_numpy(rgb).permute(2, 0, 1).float()),
    ]
    for message, src in bad:
        with pytest.raises(ValueError, match=message):
            next(iter_source(src))


def test_batches_and_empty_arrays(predictor: Predictor) -> None:
    """A [B, 3, H, W] tensor (what a torch pipeline holds) was refused as not [3, H, W]; it is B images now, and a
    [B, H, W, 3] array too. An array with no pixels gave a result for an empty image; now it is a ValueError."""
    batch = torch.rand(3, 3, 20, 24)
    results = predictor(batch)
    assert len(results) == 3 and all(r.orig_size == (24, 20) for r in results)
    one = predictor(batch[1])[0]
    assert torch.allclose(results[1].boxes, one.boxes, atol=1e-3) and torch.allclose(
        results[1].scores, one.scores, atol=1e-5
    )
    assert len(predictor(np.zeros((2, 20, 24, 3), np.uint8))) == 2
    # the batch used to change image 1's detections: a model in training mode ran with batch statistics; it runs in
    # eval mode now, and each module's own flag comes back (a training loop keeps its frozen BN in eval)
    model = predictor.detector.model  # type: ignore[attr-defined]
    frozen = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    model.train()
    frozen.eval()
    flags = [m.training for m in model.modules()]
    assert [r.scores.tolist() for r in predictor(batch)] == [r.scores.tolist() for r in results]
    assert [m.training for m in model.modules()] == flags and not frozen.training
    for empty in (np.zeros((0, 10, 3), np.uint8), torch.zeros(3, 0, 5)):
        with pytest.raises(ValueError, match=r"holds no pixels"):
            predictor(empty)


def test_missing_and_bad_sources(tmp_path: Path, predictor: Predictor) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        predictor(tmp_path / "nope.jpg")
    with pytest.raises(FileNotFoundError, match="matches no file"):
        predictor(str(tmp_path / "*.jpg"))
    with pytest.raises(TypeError, match="unsupported image source"):
        predictor(3.5)
    # the other layout is the likely mistake: said with the call that fixes it
    with pytest.raises(ValueError, match=r"got shape \(3, 20, 30\); channels first\? arr.transpose\(1, 2, 0\)"):
        predictor(np.zeros((3, 20, 30), np.uint8))
    with pytest.raises(ValueError, match=r"got shape \(20, 30, 3\); channels last\? t.permute\(2, 0, 1\)"):
        predictor(torch.zeros(20, 30, 3))
    with pytest.raises(ValueError, match=r"got shape \(20, 30, 5\)$"):  # no hint where none fits
        predictor(np.zeros((20, 30, 5), np.uint8))
    (tmp_path / "d").mkdir()
    _images(tmp_path / "d", 1)
    (tmp_path / "d" / "broken.jpg").write_bytes(b"junk")
    assert len(predictor(tmp_path / "d")) == 1  # the unreadable file is skipped with a warning


def test_a_folder_without_images_says_what_it_holds(tmp_path: Path) -> None:
    """A dataset root whose images sit in subfolders: the error names them and the glob that reads them (it said
    only 'no images or videos in this folder'); a folder of other files names them; an empty folder says so."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no images or videos in this folder$"):
        list(iter_source(tmp_path / "empty"))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"in this folder \(it holds 1 other files: readme.txt\)"):
        list(iter_source(notes))
    root = tmp_path / "root"
    for sub in ("b/deep", "a"):
        (root / sub).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / sub / "1.png")
    (root / "c").mkdir()  # no images: not named
    says = rf"root: no images or videos in this folder \(its subfolders a, b hold some: the glob '{root}/\*\*/\*'"
    with pytest.raises(FileNotFoundError, match=says):
        list(iter_source(root))
    assert [Path(path).relative_to(root).as_posix() for _, path, _, _ in iter_source(f"{root}/**/*")] == [
        "a/1.png",
        "b/deep/1.png",
    ]


def test_video_file_frames(tmp_path: Path, predictor: Predictor) -> None:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (48, 32))
    for i in range(6):
        writer.write(np.full((32, 48, 3), i * 40, np.uint8))
    writer.release()
    frames = [r.frame for r in predictor.stream(path, video_stride=2)]
    assert frames == [0, 2, 4]
    with pytest.raises(FileNotFoundError, match="missing.mp4: no such file"):
        list(iter_source(str(tmp_path / "missing.mp4")))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    with pytest.raises(OSError, match="cannot open video"):
        list(iter_source(bad))
    with pytest.raises(OSError, match="camera 99: cannot open it"):  # was '99: cannot open video or stream'
        list(iter_source("99"))


def test_conf_and_class_filters(predictor: Predictor) -> None:
    img = np.zeros((32, 32, 3), np.uint8)
    all_dets = predictor(img)[0]
    predictor.classes = {int(all_dets.labels[0])}
    try:
        assert set(predictor(img)[0].labels.tolist()) == {int(all_dets.labels[0])}
    finally:
        predictor.classes = None
    predictor.conf = 1.1
    try:
        assert len(predictor(img)[0]) == 0
    finally:
        predictor.conf = 0.0


def test_a_class_filter_ranks_every_query_of_those_classes() -> None:
    """``--classes c --max-det 5`` gives the 5 best ``c`` boxes over all (query, class) pairs, even where ``c`` is
    never among the best 300 of all classes: it gave only the ``c`` boxes among the best 300 (here none). The
    oracle takes every pair unfiltered, then keeps ``c``."""
    model = create_model("rtdetr_r18vd", num_classes=3, eval_spatial_size=[160, 160])  # 525 anchors: 300 queries
    with torch.no_grad():
        for head in model.decoder.dec_score_head:
            head.bias[2] -= 30.0  # class 2 below every pair of classes 0 and 1
    img = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    names = ["a", "b", "c"]
    every = Predictor(model, names, (160, 160), conf=0.0, max_det=900)(img)[0]  # 300 queries x 3 classes
    assert 2 not in every.labels[:300].tolist()  # the old filter (top 300 first) found nothing
    only = Predictor(model, names, (160, 160), conf=0.0, max_det=5, classes=[2])(img)[0]
    expected = every.labels == 2
    assert only.labels.tolist() == [2] * 5
    assert torch.equal(only.scores, every.scores[expected][:5]) and torch.equal(only.boxes, every.boxes[expected][:5])
    two = Predictor(model, names, (160, 160), conf=0.0, max_det=7, classes=[0, 2])(img)[0]
    expected = (every.labels == 0) | (every.labels == 2)
    assert torch.equal(two.scores, every.scores[expected][:7]) and torch.equal(two.labels, every.labels[expected][:7])
    # without a filter max_det still cuts to the best max_det
    assert torch.equal(Predictor(model, names, (160, 160), conf=0.0, max_det=3)(img)[0].scores, every.scores[:3])


def test_results_formats_and_save(tmp_path: Path) -> None:
    r = Results(
        torch.tensor([[10.0, 20.0, 30.0, 60.0]]),
        torch.tensor([0.8]),
        torch.tensor([1]),
        ["a", "b"],
        (100, 200),
        "x.jpg",
        None,
        Image.new("RGB", (100, 200)),
    )
    assert r.xywh.tolist() == [[20.0, 40.0, 20.0, 40.0]]
    assert torch.allclose(r.xywhn, torch.tensor([[0.2, 0.2, 0.2, 0.2]]))
    assert torch.allclose(r.xyxyn, torch.tensor([[0.1, 0.1, 0.3, 0.3]]))
    d = r.to_dict()
    assert d["detections"] == [{"label": 1, "name": "b", "score": 0.8, "box": [10.0, 20.0, 30.0, 60.0]}]
    assert r.save(tmp_path / "o.png").is_file() and r.save(tmp_path / "o.json").read_text().startswith("{")
    no_image = Results(r.boxes, r.scores, r.labels, r.names, r.orig_size)
    with pytest.raises(ValueError, match="keeps no image"):
        no_image.plot()
    with pytest.raises(ValueError, match=r"o.csv: save as an image \(.jpg, .png, ...\), as .json or as .txt"):
        r.save(tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()
    assert no_image.save(tmp_path / "o.txt").read_text() == "1 0.200000 0.200000 0.200000 0.200000\n"  # YOLO
    # one line, not every class name and tensor (an 80-class model printed ~1,500 characters per result)
    assert repr(r) == "Results('x.jpg', 100x200, 1 detections: b 0.80)"
    many = Results(torch.zeros(7, 4), torch.linspace(0.9, 0.3, 7), torch.zeros(7, dtype=torch.long), ["a"] * 80,
                   (5, 6), None, 3)  # fmt: skip
    assert repr(many) == (
        "Results(in-memory image frame 3, 5x6, 7 detections: a 0.90, a 0.80, a 0.70, a 0.60, a 0.50, ... (7 in all))"
    )


def test_boxes_are_clipped_to_the_image() -> None:
    from rtdetr.engine.predictor import filter_detections

    det = {
        "boxes": torch.tensor([[-5.0, -2.0, 30.0, 50.0], [10.0, 10.0, 20.0, 20.0]]),
        "scores": torch.tensor([0.9, 0.8]),
        "labels": torch.tensor([0, 1]),
    }
    out = filter_detections(det, 0.5, image_size=(25, 40))
    assert out["boxes"].tolist() == [[0.0, 0.0, 25.0, 40.0], [10.0, 10.0, 20.0, 20.0]]
    assert filter_detections(det, 0.95, image_size=(25, 40))["boxes"].shape == (0, 4)


def test_non_finite_detections_are_dropped_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """NaN/inf boxes or scores (broken weights, fp16 overflow) are dropped before clipping, which would turn an
    infinite edge into the image's edge; said once, not for every frame."""
    import logging

    from rtdetr.engine import predictor as module

    monkeypatch.setattr(module, "_non_finite_seen", [])
    nan, inf = float("nan"), float("inf")
    det = {
        "boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0], [nan, 0, 5, 5], [0, 0, inf, 5], [0, 0, 4, 4], [1, 1, 2, 2]]),
        "scores": torch.tensor([0.9, 0.8, 0.7, nan, 0.6]),
        "labels": torch.tensor([0, 1, 2, 0, 1]),
    }
    with caplog.at_level(logging.WARNING, logger="rtdetr"):
        out = module.filter_detections(det, 0.0, image_size=(25, 40))
        module.filter_detections(det, 0.0, image_size=(25, 40))
    assert out["boxes"].tolist() == [[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 2.0]] and out["labels"].tolist() == [0, 1]
    assert caplog.text.count("gave 3 detection(s) with NaN or infinite") == 1


def test_batch_preprocessing_on_threads_is_the_serial_one(predictor: Predictor) -> None:
    """A batch is resized on a thread pool: the same pixels, in the same order, as one image at a time (sizes
    and modes differ, so an order slip or a shared buffer would show)."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((30 + 7 * i, 90 - 5 * i, 3)) * 255).astype(np.uint8)) for i in range(9)]
    images[3] = images[3].convert("L")
    images[5] = images[5].convert("RGBA")
    x, sizes = predictor.preprocess(images)
    for i, im in enumerate(images):
        one, size = predictor.preprocess([im])
        assert torch.equal(x[i], one[0]) and torch.equal(sizes[i], size[0])
    assert sizes.tolist() == [list(im.size) for im in images]


def test_resize_on_the_device_gives_pils_pixels() -> None:
    """``resize="device"`` (the default for a model on CUDA; here on the CPU, uint8 kernel) gives PIL's pixels
    within one grey level, for downscaling (antialiased), upscaling, grey/RGBA images and the network size itself;
    the detections follow. Without antialiasing the same resize is off by many levels (checked: the test's
    tolerance would catch it)."""
    model = create_model("rtdetr_r18vd", num_classes=3, eval_spatial_size=[64, 64]).eval()
    pil = Predictor(model, ["a", "b", "c"], (64, 64), conf=0.0, max_det=5)
    dev = Predictor(model, ["a", "b", "c"], (64, 64), conf=0.0, max_det=5, resize="device")
    assert pil.resize_device is None and dev.resize_device == torch.device("cpu")
    rng = np.random.default_rng(1)
    images = [Image.fromarray((rng.random(shape) * 255).astype(np.uint8)) for shape in
              [(300, 200, 3), (40, 30, 3), (64, 64, 3), (64, 130, 3)]]  # fmt: skip
    images += [images[0].convert("L"), images[1].convert("RGBA")]
    a, sa = pil.preprocess(images)
    b, sb = dev.preprocess(images)
    assert torch.equal(sa, sb) and a.shape == b.shape == (6, 3, 64, 64)
    assert (a - b).abs().max() <= 1.0 / 255 + 1e-6 and (a - b).abs().mean() < 0.2 / 255
    assert torch.equal(a[2], b[2])  # already at the network size: untouched
    for ra, rb in zip(pil(images[:2]), dev(images[:2])):
        assert torch.allclose(ra.scores, rb.scores, atol=2e-2)
    aliased = torch.nn.functional.interpolate(  # the broken variant: bilinear without the antialias filter
        torch.from_numpy(np.array(images[0])).permute(2, 0, 1)[None].float(), size=(64, 64), mode="bilinear"
    ).div(255.0)
    assert (a[0] - aliased[0]).abs().mean() > 1.0 / 255
    with pytest.raises(ValueError, match="resize must be one of"):
        Predictor(model, ["a", "b", "c"], (64, 64), resize="gpu")


def test_image_urls_are_downloaded(tmp_path: Path) -> None:
    """An http(s) URL ending in an image extension went to OpenCV as a 'stream' ('cannot open video or stream');
    now it is fetched and decoded, and each failure names the URL (served here by a local HTTP server)."""
    import functools
    import http.server
    import threading

    from rtdetr.engine.predictor import iter_source

    Image.new("RGB", (40, 30), (0, 120, 250)).save(tmp_path / "blue.png")
    (tmp_path / "text.jpg").write_text("not an image")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        [(image, path, frame, size)] = list(iter_source(f"{base}/blue.png?size=large"))
        assert image.size == size == (40, 30) and image.getpixel((5, 5)) == (0, 120, 250)
        assert (path, frame) == (f"{base}/blue.png?size=large", None)
        with pytest.raises(OSError, match=r"missing.jpg: cannot download \(HTTP 404 File not found\)"):
            list(iter_source(f"{base}/missing.jpg"))
        with pytest.raises(OSError, match=r"text.jpg"):
            list(iter_source(f"{base}/text.jpg"))
    finally:
        server.shutdown()


def test_a_txt_list_of_images_is_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A YOLO split list (`val.txt`, one path per line) was 'not an image'; now its images are read in order:
    relative paths against the list's folder, absolute ones as they are; a missing one skipped and named."""
    import logging

    from rtdetr.engine.predictor import iter_source

    (tmp_path / "images").mkdir()
    for name, colour in (("a.png", (255, 0, 0)), ("b.png", (0, 255, 0))):
        Image.new("RGB", (8, 6), colour).save(tmp_path / "images" / name)
    listing = tmp_path / "val.txt"
    listing.write_text(f"images/b.png\n\n{tmp_path / 'images' / 'a.png'}\nimages/gone.png\n")
    with caplog.at_level(logging.WARNING, logger="rtdetr"):
        items = list(iter_source(listing))
    assert [Path(str(path)).name for _, path, _, _ in items] == ["b.png", "a.png"]
    assert [im.getpixel((0, 0)) for im, _, _, _ in items] == [(0, 255, 0), (255, 0, 0)]
    assert "gone.png" in caplog.text
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(FileNotFoundError, match="empty.txt: an empty list of images"):
        list(iter_source(tmp_path / "empty.txt"))


def test_large_image_files_are_decoded_shrunk_as_val_loads_them(
    tmp_path: Path, predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large image file was decoded at full resolution for a 64 px (or 640 px) input: now it is decoded only to
    twice the input (a JPEG at a reduced DCT scale, a third of the time for a 12-megapixel photo), exactly as
    training and ``val`` load it, with boxes in the original's pixels; ``plot()`` reads the file again at full
    size. With ``shrink_above=0``, and where drawings are saved, the file is decoded once at full resolution."""
    import rtdetr.engine.predictor as module
    from rtdetr.data.dataset import load_cover, load_image, load_image_covering

    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 255, 1200)[None, :, None] * np.ones((900, 1, 3))
    photo = tmp_path / "photo.jpg"
    Image.fromarray((ramp * 0.8 + rng.random((900, 1200, 3)) * 50).astype(np.uint8)).save(photo, quality=92)
    val_way, full = load_image_covering(photo, load_cover((64, 64), 2.0))
    assert full == (1200, 900) and val_way.size == (171, 128)
    x, sizes = predictor.preprocess([val_way], [full])
    got: list = []
    monkeypatch.setattr(predictor, "infer", lambda xb, sb: got.append((xb, sb)) or [_empty()] * len(xb))
    [r] = predictor(photo)
    assert torch.equal(got[0][0], x) and got[0][1].tolist() == [[1200, 900]]  # val's pixels, the original's size
    assert not torch.equal(got[0][0], predictor.preprocess([load_image(photo)])[0])  # not the full decode's
    assert r.orig_size == (1200, 900) and r.image is None and r.plot().size == (1200, 900)
    photo.rename(tmp_path / "moved.jpg")
    with pytest.raises(ValueError, match="photo.jpg: no such file now, and this result keeps no image"):
        r.plot()
    (tmp_path / "moved.jpg").rename(photo)
    monkeypatch.undo()
    full_res = Predictor(predictor.detector, ["a", "b", "c"], (64, 64), conf=0.0, max_det=5, shrink_above=0)
    assert full_res.cover is None
    [r] = full_res(photo)
    assert r.image is not None and r.image.size == (1200, 900)
    [r] = predictor(photo)
    assert r.boxes[:, 2].max() > 171  # scaled to the original, not to the decoded image
    covers: list = []
    real = module.load_image_covering
    monkeypatch.setattr(module, "load_image_covering", lambda p, c, *a: covers.append(c) or real(p, c, *a))
    from rtdetr import RTDETR

    det = RTDETR("rtdetr_r18vd", num_classes=3, eval_spatial_size=[64, 64])
    det.predict(photo, output=tmp_path / "out")
    det.predict(photo)
    assert covers == [None, (128, 128)]  # drawings saved: one full decode; else the shrunk one
    assert Image.open(tmp_path / "out" / "photo.jpg").size == (1200, 900)


def _empty() -> dict[str, torch.Tensor]:
    return {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}
