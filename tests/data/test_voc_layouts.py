"""VOC as users export it: lowercase folders, no ImageSets lists, a class-name typo, images without xml. Every
decision the parser takes is stated (``notes``), through the library and ``rtdetr check-data``."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdetr.cli import main
from rtdetr.data import DataError, load_index
from tests.data.conftest import write_image

_XML = """<annotation><filename>{name}.jpg</filename><size><width>64</width><height>48</height></size>
<object><name>{cls}</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def _export(root: Path, n: int, ann: str = "annotations", img: str = "images", typo_at: int | None = None) -> Path:
    (root / ann).mkdir(parents=True)
    for i in range(n):
        cls = "platelet" if typo_at == i else ("cell" if i % 2 else "rbc")
        (root / ann / f"img{i:03d}.xml").write_text(_XML.format(name=f"img{i:03d}", cls=cls))
        write_image(root / img / f"img{i:03d}.jpg")
    return root


def test_lowercase_export_layout_with_a_fixed_split(tmp_path: Path) -> None:
    root = _export(tmp_path / "export", 40)
    train, val = load_index(root, "train"), load_index(root, "val")
    assert train.format == val.format == "voc"
    names_t = {r.path.name for r in train.records}
    names_v = {r.path.name for r in val.records}
    assert names_t.isdisjoint(names_v) and len(names_t) + len(names_v) == 40  # validation is not training
    assert 3 <= len(names_v) <= 15
    assert all(r.path.is_file() for r in val.records)
    assert any("no ImageSets/Main lists" in n for n in val.notes)
    assert {r.path.name for r in load_index(root, "val").records} == names_v  # the same split every time
    with pytest.raises(Exception, match="only train/val splits"):
        load_index(root, "holdout")


def test_a_split_path_inside_a_voc_folder_points_to_the_folder(tmp_path: Path) -> None:
    root = _export(tmp_path / "voc", 4, "Annotations", "JPEGImages")
    with pytest.raises(Exception, match=r"voc/train: no such file or folder \(.*voc is a VOC folder: give that"):
        load_index(root / "train", "train")
    with pytest.raises(Exception, match=r"voc/cells: no such file or folder$"):  # not a split name: no guess
        load_index(root / "cells", "train")


def test_typo_and_unannotated_images_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _export(tmp_path / "voc", 24, "Annotations", "JPEGImages", typo_at=7)
    write_image(root / "JPEGImages" / "extra.jpg")
    idx = load_index(root, None)  # type: ignore[arg-type]
    assert "platelet" in idx.class_names
    assert any("'platelet' appears in one file only (img007.xml)" in n for n in idx.notes)
    assert any("1 images in" in n and "extra.jpg" in n for n in idx.notes)
    (root / "label_list.txt").write_text("cell\nrbc\n")  # pinned: the typo is an unknown class, reported
    pinned = load_index(root, "train")
    assert (
        pinned.class_names == ["cell", "rbc"]
        and pinned.dropped.get("unknown class", 0) + len(load_index(root, "val").problems) >= 1
    )
    main(["check-data", str(root), "--split", "train", "--no-decode"])
    out = capsys.readouterr().out
    assert "note: no ImageSets/Main lists" in out and "note: 1 images" in out


def test_filename_with_another_extension_finds_the_image(tmp_path: Path) -> None:
    """<filename> says .jpg but the export wrote .png (or no extension at all): the image with the annotation's
    name is used and the substitution is stated; a name matching nothing stays missing."""
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    for stem, written, named in [
        ("a", "a.png", "a.jpg"),
        ("b", "b.JPEG", "b"),
        ("c", "c.jpg", "c.jpg"),
        ("d", "x.png", "d.jpg"),
    ]:
        (root / "Annotations" / f"{stem}.xml").write_text(_XML.format(name="X", cls="rbc").replace("X.jpg", named))
        write_image(root / "JPEGImages" / written)
    idx = load_index(root, None)  # type: ignore[arg-type]
    paths = {r.path.name for r in idx.records}
    assert paths == {"a.png", "b.JPEG", "c.jpg"}  # d.jpg names no file: dropped and listed when loaded
    assert idx.dropped["missing image file"] == 1 and any("no file" in p and "d.jpg" in p for p in idx.problems)
    note = next(n for n in idx.notes if "name an image file that is not in" in n)
    assert note.startswith("2 annotations") and "a.xml: a.jpg -> a.png" in note and "b.xml: b -> b.JPEG" in note


def test_box_problems_name_the_tag_and_case_twins_are_noted(tmp_path: Path) -> None:
    """A missing <bndbox> or an empty <xmin> read as 'non-finite coordinates [nan, nan, nan, nan]'; 'Cat' and 'cat'
    became two classes without a word."""
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    head = "<annotation><filename>{}.jpg</filename><size><width>64</width><height>48</height></size>"
    bodies = {
        "a": "<object><name>cat</name><bndbox><xmin>1.5</xmin><ymin>2</ymin><xmax>20</xmax><ymax>30</ymax></bndbox>"
        "</object>",
        "b": "<object><name>Cat</name></object>",
        "c": "<object><name>cat</name><bndbox><xmin></xmin><ymin>2</ymin><xmax>x</xmax><ymax>30</ymax></bndbox>"
        "</object>",
        "d": "<object><name>red_cell</name></object><object><name>red cell</name></object>",
    }
    for stem, body in bodies.items():
        (root / "Annotations" / f"{stem}.xml").write_text(head.format(stem) + body + "</annotation>")
        write_image(root / "JPEGImages" / f"{stem}.jpg")
    idx = load_index(root, None)  # type: ignore[arg-type]
    assert idx.dropped["malformed bbox"] == 4 and idx.num_boxes() == 1
    assert any(
        p.endswith("b.xml: object 0 (Cat): no <bndbox>; a box needs numeric xmin/ymin/xmax/ymax") for p in idx.problems
    )
    assert any("c.xml: object 0 (cat): no <xmin>, <xmax> 'x';" in p for p in idx.problems)
    assert any("class names ['Cat', 'cat'] differ only in case" in n for n in idx.notes)
    assert any("['red cell', 'red_cell'] differ only in case, spaces or '_'" in n for n in idx.notes)  # as --classes


def test_xml_beside_the_images_labelimg_and_roboflow_layouts(tmp_path: Path) -> None:
    """labelImg writes each xml beside its image; Roboflow's VOC export does so in train/ valid/ test/. Both load
    from the folder (format told from the xml files): the split folders by split name (``val`` finds ``valid``),
    a split's own folder whole, a flat folder by the fixed name-hash split."""
    flat = tmp_path / "labelimg"
    flat.mkdir()
    for i in range(30):
        (flat / f"img{i:03d}.xml").write_text(_XML.format(name=f"img{i:03d}", cls="cell" if i % 2 else "rbc"))
        write_image(flat / f"img{i:03d}.jpg")
    write_image(flat / "not_labelled_yet.jpg")
    train, val = load_index(flat, "train"), load_index(flat, "val")
    assert train.format == "voc" and len(train.records) + len(val.records) == 30 and 0 < len(val.records) < 15
    assert not {r.path for r in train.records} & {r.path for r in val.records}
    assert train.class_names == ["cell", "rbc"] and train.records[0].boxes.tolist() == [[5.0, 5.0, 30.0, 30.0]]
    assert any("not_labelled_yet.jpg" in n for n in train.notes)

    export = tmp_path / "export"
    for split, n in (("train", 6), ("valid", 3), ("test", 2)):
        (export / split).mkdir(parents=True)
        for i in range(n):
            (export / split / f"{split}{i}.xml").write_text(_XML.format(name=f"{split}{i}", cls="cell"))
            write_image(export / split / f"{split}{i}.jpg")
    (export / "README.roboflow.txt").write_text("exported\n")
    assert [len(load_index(export, s).records) for s in ("train", "val", "test")] == [6, 3, 2]
    assert all(r.path.parent.name == "valid" for r in load_index(export, "val").records)
    assert len(load_index(export / "valid", "train").records) == 3  # a split's folder: all of it
    with pytest.raises(DataError, match=r"export: no folder for split 'holdout' \(the splits here: test/, train/, "):
        load_index(export, "holdout")
