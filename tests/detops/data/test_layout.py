"""Layout discovery and annotation loading: both layouts found, every user mistake a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from detops.data.layout import find_split, list_splits, load_coco_json
from detops.errors import DetopsError


def _coco2017(src: Path, dst: Path) -> Path:
    """Copy our layout into the real COCO 2017 naming."""
    (dst / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        shutil.copy(
            src / "annotations" / f"instances_{split}.json",
            dst / "annotations" / f"instances_{split}2017.json",
        )
        shutil.copytree(src / split, dst / f"{split}2017")
    return dst


def test_finds_our_layout(synth_root: Path) -> None:
    split = find_split(synth_root, "val")
    assert split.layout == "detops"
    assert split.annotations == synth_root.resolve() / "annotations" / "instances_val.json"
    assert split.images == synth_root.resolve() / "val"
    assert [s.name for s in list_splits(synth_root)] == ["train", "val"]


def test_finds_coco2017_layout(synth_root: Path, tmp_path: Path) -> None:
    root = _coco2017(synth_root, tmp_path / "coco")
    for name in ("val", "val2017"):
        split = find_split(root, name)
        assert split.name == "val"
        assert split.layout == "coco2017"
        assert split.images.name == "val2017"
        assert split.annotations.name == "instances_val2017.json"
    assert [s.layout for s in list_splits(root)] == ["coco2017", "coco2017"]


def test_only_val_present(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(synth_root / "annotations" / "instances_val.json", root / "annotations")
    shutil.copytree(synth_root / "val", root / "val")
    assert [s.name for s in list_splits(root)] == ["val"]
    with pytest.raises(DetopsError, match="instances_train.json"):
        find_split(root, "train")


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: p, "not a COCO-format dataset"),
    ],
)
def test_missing_root_or_not_coco(tmp_path: Path, make, pattern: str) -> None:
    with pytest.raises(DetopsError, match=pattern) as info:
        list_splits(make(tmp_path))
    assert "\n" not in str(info.value)


def test_missing_image_dir(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "d"
    shutil.copytree(synth_root / "annotations", root / "annotations")
    with pytest.raises(DetopsError, match=r"image directory .*train is missing"):
        find_split(root, "train")


def test_unknown_split(synth_root: Path) -> None:
    with pytest.raises(DetopsError, match="unknown split 'test'"):
        find_split(synth_root, "test")


def test_load_ok(synth_root: Path) -> None:
    data = load_coco_json(synth_root / "annotations" / "instances_train.json")
    assert len(data["images"]) == 8
    assert {c["id"] for c in data["categories"]} == {1, 3, 8, 17, 44, 90}


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text('{"images": [],\n  "annotations": [,]\n}\n')
    with pytest.raises(DetopsError) as info:
        load_coco_json(f)
    msg = str(info.value)
    assert str(f) in msg and "line 2, column 19" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("doc", "pattern"),
    [
        ([1, 2], "top level is list"),
        ({"images": [], "annotations": []}, "missing top-level key.*categories"),
        ({"images": {}, "annotations": [], "categories": []}, "'images' is dict, not a list"),
    ],
)
def test_not_coco_shaped(tmp_path: Path, doc: object, pattern: str) -> None:
    f = tmp_path / "x.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(DetopsError, match=pattern):
        load_coco_json(f)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DetopsError, match="does not exist"):
        load_coco_json(tmp_path / "instances_val.json")
