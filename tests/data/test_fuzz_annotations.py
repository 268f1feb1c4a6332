"""Property-based fuzzing of the annotation parsers (COCO json, YOLO txt, VOC xml) and the image decoder.

Whatever the file holds, a parser either raises :class:`DataError` naming the file, or returns an index whose
every box is finite, inside its image, at least 1 px wide and tall, and whose labels are valid class ids; every
dropped entry is counted and described. Nothing else (KeyError, TypeError, OverflowError...) ever escapes.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from rtdetr.data.coco import load_coco
from rtdetr.data.dataset import load_image
from rtdetr.data.records import DataError, DatasetIndex
from rtdetr.data.voc import load_voc
from rtdetr.data.yolo import load_yolo

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# numbers that break naive parsers: NaN, infinities, negatives, huge, bools, strings
weird_number = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.sampled_from([0, 1, -1, 10, 64, 1e308, -0.0]),
)
json_leaf = st.one_of(weird_number, st.text(max_size=10))
json_value = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


def _check_index(index: DatasetIndex) -> None:
    c = index.num_classes
    assert c > 0
    assert (
        sum(index.dropped.values()) + sum(index.adjusted.values()) >= len(index.problems) or len(index.problems) == 200
    )
    for rec in index.records:
        b, lb = rec.boxes, rec.labels
        assert b.dtype == np.float32 and b.shape == (len(lb), 4)
        assert np.isfinite(b).all()
        assert ((b[:, 2] - b[:, 0]) >= 1).all() and ((b[:, 3] - b[:, 1]) >= 1).all()
        assert (b >= 0).all()
        if rec.width is not None and rec.height is not None:
            assert (b[:, 2] <= rec.width).all() and (b[:, 3] <= rec.height).all()
        assert ((lb >= 0) & (lb < c)).all()


# ------------------------------------------------------------------------------------------------------- COCO
coco_bbox = st.one_of(st.lists(weird_number, min_size=0, max_size=5), json_value)
coco_image = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(0, 4), weird_number), "file_name": st.one_of(st.just("a.jpg"), json_leaf)},
    optional={"width": weird_number, "height": weird_number},
)
coco_ann = st.fixed_dictionaries(
    {
        "image_id": st.one_of(st.integers(0, 4), weird_number),
        "category_id": st.one_of(st.integers(0, 4), weird_number),
        "bbox": st.one_of(st.lists(st.floats(-50, 300), min_size=4, max_size=4), coco_bbox),
    },
    optional={"iscrowd": st.one_of(st.just(0), weird_number), "area": weird_number},
)
coco_cat = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(0, 4), weird_number)}, optional={"name": st.one_of(st.text(max_size=5), json_leaf)}
)
coco_doc = st.one_of(
    st.fixed_dictionaries(
        {
            "images": st.one_of(st.lists(st.one_of(coco_image, json_value), max_size=6), json_value),
            "annotations": st.one_of(st.lists(st.one_of(coco_ann, json_value), max_size=12), json_value),
            "categories": st.one_of(st.lists(st.one_of(coco_cat, json_value), max_size=5), json_value),
        }
    ),
    json_value,
)


@FUZZ
@given(doc=coco_doc)
def test_coco_parser_never_crashes(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "instances_train.json"
        path.write_text(json.dumps(doc, allow_nan=True))
        try:
            index = load_coco(path)
        except DataError as e:
            assert str(path) in str(e)
            return
        _check_index(index)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_coco_parser_on_arbitrary_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.json"
        path.write_bytes(raw)
        try:
            _check_index(load_coco(path))
        except DataError as e:
            assert str(path) in str(e)


# ------------------------------------------------------------------------------------------------------- YOLO
yolo_token = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 5).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0.5", "1.0", "2", "-0.1", "x", "", "1,0", "0x10", "３"]),
    st.text(max_size=4),
)
yolo_line = st.one_of(st.lists(yolo_token, min_size=5, max_size=5), st.lists(yolo_token, max_size=9)).map(" ".join)


@pytest.fixture(scope="module")
def yolo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("yolo")
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (64, 48), (9, 9, 9)).save(root / "images" / "train" / "a.jpg")
    (root / "images" / "train" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cat, dog, bird]\n")
    return root


@FUZZ
@given(lines=st.lists(yolo_line, max_size=10), raw=st.one_of(st.none(), st.binary(max_size=60)))
@example(lines=["0.0 0.0 0.0 0.0 \r 0.0", "1 0.5 0.5 0.2 0.2\x0c2 0.5 0.5 0.1 0.1"], raw=None)  # line breaks
@example(lines=["0.0 0.0 0.0 0.0 0.0 0.0 0.0", "2 0.1 0.1 0.9 0.2 0.5 0.8", "1 0 0 1 1 0 0 1"], raw=None)  # polygons
def test_yolo_label_lines_never_crash(yolo_root: Path, lines: list[str], raw: bytes | None) -> None:
    label = yolo_root / "labels" / "train" / "a.txt"
    if raw is None:
        label.write_text("\n".join(lines), encoding="utf-8")
    else:
        label.write_bytes(raw)
    index = load_yolo(yolo_root / "data.yaml")
    _check_index(index)
    assert [r.path.name for r in index.records] == ["a.jpg"]  # the undecodable image is dropped and reported
    assert any("broken.jpg" in p for p in index.problems)
    # (the file is read as text: a CR or any other line break inside a "line" splits it, as Python and YOLO do)
    valid = sum(1 for ln in "\n".join(lines).splitlines() if _valid_yolo_line(ln)) if raw is None else None
    if valid is not None:  # every well-formed line either became a box or was reported as degenerate
        dropped = index.dropped["degenerate box"] + index.dropped["non-finite box"] + index.dropped["inverted box"]
        assert len(index.records[0].labels) + dropped == valid


def _valid_yolo_line(line: str) -> bool:
    f = line.split()
    if len(f) not in (5, 6) and not (len(f) >= 7 and len(f) % 2 == 1):  # a box (+ a score), or a 3+ point polygon
        return False
    try:
        vals = [float(v) for v in f]
    except ValueError:
        return False
    return math.isfinite(vals[0]) and vals[0] == int(vals[0]) and 0 <= vals[0] < 3  # the box is checked later


@FUZZ
@given(names=st.one_of(json_value, st.text(max_size=30)))
def test_yolo_data_yaml_never_crashes(yolo_root: Path, names: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        y = Path(d) / "data.yaml"
        y.write_text(f"path: {yolo_root}\ntrain: images/train\nnames: {json.dumps(names, allow_nan=True)}\n")
        try:
            _check_index(load_yolo(y))
        except DataError as e:
            assert str(y) in str(e) or str(yolo_root) in str(e)


# -------------------------------------------------------------------------------------------------------- VOC
xml_text = st.one_of(
    weird_number.map(str), st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=6)
)


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


voc_object = st.builds(
    lambda name, coords, extra: (
        f"<object><name>{_xml_escape(name)}</name>"
        + ("<bndbox>" + "".join(f"<{t}>{_xml_escape(v)}</{t}>" for t, v in coords) + "</bndbox>" if coords else "")
        + extra
        + "</object>"
    ),
    st.one_of(st.sampled_from(["cat", "dog", "bird", "", "Cat"]), xml_text),
    st.one_of(
        st.none(),
        st.lists(
            st.tuples(
                st.sampled_from(["xmin", "ymin", "xmax", "ymax", "x"]), st.one_of(xml_text, st.floats(-20, 90).map(str))
            ),
            max_size=5,
        ),
    ),
    st.sampled_from(["", "<difficult>1</difficult>", "<bndbox/>"]),
)
voc_doc = st.builds(
    lambda size, objects: f"<annotation><filename>a.jpg</filename>{size}{''.join(objects)}</annotation>",
    st.one_of(
        st.just(""),
        st.builds(
            lambda w, h: f"<size><width>{_xml_escape(w)}</width><height>{_xml_escape(h)}</height></size>",
            xml_text,
            xml_text,
        ),
        st.just("<size><width>64</width><height>48</height></size>"),
    ),
    st.lists(voc_object, max_size=5),
)


@FUZZ
@given(doc=st.one_of(voc_doc, st.binary(max_size=80).map(lambda b: b.decode("latin-1"))))
def test_voc_parser_never_crashes(doc: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "Annotations").mkdir()
        (root / "JPEGImages").mkdir()
        (root / "Annotations" / "a.xml").write_text(doc, encoding="utf-8")
        try:
            index = load_voc(root, split=None, class_names=["cat", "dog", "bird"])
        except DataError as e:
            assert str(root) in str(e)
            return
        _check_index(index)


# ------------------------------------------------------------------------------------------------------ images
def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg_bytes()


@FUZZ
@given(
    cut=st.integers(0, len(JPEG)),
    flips=st.lists(st.tuples(st.integers(0, len(JPEG) - 1), st.integers(0, 255)), max_size=8),
)
def test_truncated_or_corrupted_images_decode_or_fail_clearly(cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(JPEG)
    for pos, val in flips:
        data[pos] = val
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "img.jpg"
        path.write_bytes(bytes(data[:cut]))
        try:
            im = load_image(path)
        except OSError as e:
            assert str(path) in str(e)
            return
        assert im.mode == "RGB" and im.size[0] > 0 and im.size[1] > 0
