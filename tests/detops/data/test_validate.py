"""The GE validation suite: synthetic data passes; each corruption fails the right expectation."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from detops.cli import main
from detops.data.validate import ValidationReport, validate_dataset

Corrupt = Callable[[Path, dict[str, Any]], None]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _ann_file(root: Path) -> Path:
    return root / "annotations" / "instances_val.json"


def _corrupted(synth_root: Path, tmp_path: Path, corrupt: Corrupt) -> Path:
    root = _copy(synth_root, tmp_path / "data")
    data = json.loads(_ann_file(root).read_text())
    corrupt(root, data)
    _ann_file(root).write_text(json.dumps(data))
    return root


def _first_ann(data: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in data["annotations"] if a["iscrowd"] == 0)


def _image_of(data: dict[str, Any], ann: dict[str, Any]) -> dict[str, Any]:
    return next(im for im in data["images"] if im["id"] == ann["image_id"])


def bbox_outside(root: Path, data: dict[str, Any]) -> None:
    ann = _first_ann(data)
    ann["bbox"][0] = _image_of(data, ann)["width"] - 2.0
    ann["bbox"][2] = 10.0


def negative_width(root: Path, data: dict[str, Any]) -> None:
    _first_ann(data)["bbox"][2] = -5.0


def unknown_category(root: Path, data: dict[str, Any]) -> None:
    _first_ann(data)["category_id"] = 2  # a gap in the synthetic ids


def duplicate_image_id(root: Path, data: dict[str, Any]) -> None:
    data["images"][1]["id"] = data["images"][0]["id"]


def missing_image(root: Path, data: dict[str, Any]) -> None:
    _first_ann(data)["image_id"] = 999_999


def missing_file(root: Path, data: dict[str, Any]) -> None:
    (root / "val" / data["images"][0]["file_name"]).unlink()


def truncated_jpeg(root: Path, data: dict[str, Any]) -> None:
    path = root / "val" / data["images"][0]["file_name"]
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def wrong_size(root: Path, data: dict[str, Any]) -> None:
    data["images"][0]["width"] += 10


def bad_iscrowd(root: Path, data: dict[str, Any]) -> None:
    _first_ann(data)["iscrowd"] = 2


def zero_area(root: Path, data: dict[str, Any]) -> None:
    _first_ann(data)["area"] = 0


def nan_bbox(root: Path, data: dict[str, Any]) -> None:
    _first_ann(data)["bbox"][1] = float("nan")  # json.dumps writes NaN, json.load reads it back


def short_bbox(root: Path, data: dict[str, Any]) -> None:
    _first_ann(data)["bbox"] = _first_ann(data)["bbox"][:3]


def missing_field(root: Path, data: dict[str, Any]) -> None:
    del data["images"][0]["height"]


# corruption -> (table, column of the expectation that must fail, the id it must name)
CASES: dict[str, tuple[Corrupt, str, str, Callable[[dict[str, Any]], int]]] = {
    "bbox outside the image": (bbox_outside, "annotations", "bbox_outside_by", lambda d: _first_ann(d)["id"]),
    "negative width": (negative_width, "annotations", "bbox_w", lambda d: _first_ann(d)["id"]),
    "unknown category": (unknown_category, "annotations", "category_id", lambda d: _first_ann(d)["id"]),
    "duplicate image id": (duplicate_image_id, "images", "id", lambda d: d["images"][0]["id"]),
    "annotation on a missing image": (
        missing_image,
        "annotations",
        "image_declared",
        lambda d: _first_ann(d)["id"],
    ),
    "missing image file": (missing_file, "images", "file_present", lambda d: d["images"][0]["id"]),
    "truncated JPEG": (truncated_jpeg, "images", "decodable", lambda d: d["images"][0]["id"]),
    "wrong declared size": (wrong_size, "images", "size_matches", lambda d: d["images"][0]["id"]),
    "iscrowd not 0/1": (
        bad_iscrowd,
        "annotations",
        "iscrowd",
        lambda d: next(a["id"] for a in d["annotations"] if a["iscrowd"] == 2),
    ),
    "zero area": (zero_area, "annotations", "area", lambda d: _first_ann(d)["id"]),
    "non-finite bbox": (nan_bbox, "annotations", "bbox_finite", lambda d: _first_ann(d)["id"]),
    "bbox of 3 numbers": (short_bbox, "annotations", "bbox_well_formed", lambda d: _first_ann(d)["id"]),
    "missing image height": (missing_field, "images", "height", lambda d: d["images"][0]["id"]),
}


def _failed(report: ValidationReport) -> dict[tuple[str, str], Any]:
    return {(f.table, f.column): f for f in report.failures}


def test_synthetic_data_is_valid(synth_root: Path, tmp_path: Path) -> None:
    report = validate_dataset(synth_root, sample_images=None, docs_dir=tmp_path / "docs")
    assert report.success, report.failures
    assert report.counts["train"]["images"] == 8 and report.counts["val"]["decoded"] == 4
    assert report.docs_path is not None and report.docs_path.is_file()


@pytest.mark.parametrize("case", list(CASES))
def test_corruption_fails_named_expectation(synth_root: Path, tmp_path: Path, case: str) -> None:
    corrupt, table, column, bad_id = CASES[case]
    root = _corrupted(synth_root, tmp_path, corrupt)
    data = json.loads(_ann_file(root).read_text())
    report = validate_dataset(root, splits=["val"], sample_images=None)
    assert not report.success
    failed = _failed(report)
    assert (table, column) in failed, sorted(failed)
    failure = failed[(table, column)]
    assert failure.split == "val" and failure.count and failure.count >= 1
    assert str(bad_id(data)) in failure.examples
    # Only the intended check (and, for a duplicated id, the orphaned annotations) may fail.
    allowed = {(table, column), ("annotations", "image_declared")}
    if case == "missing image height":  # the decoded size cannot match a missing declared one
        allowed.add(("images", "size_matches"))
    assert set(failed) <= allowed, sorted(failed)


def test_sampling_skips_decoding(synth_root: Path, tmp_path: Path) -> None:
    root = _corrupted(synth_root, tmp_path, truncated_jpeg)
    report = validate_dataset(root, splits=["val"], sample_images=0)
    assert report.success and report.counts["val"]["decoded"] == 0


def test_coco2017_layout_accepted(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(_ann_file(synth_root), root / "annotations" / "instances_val2017.json")
    shutil.copytree(synth_root / "val", root / "val2017")
    report = validate_dataset(root, sample_images=2)
    assert report.success and list(report.counts) == ["val"] and report.counts["val"]["decoded"] == 2


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_valid_and_invalid(synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(
        ["data", "validate", str(synth_root), "--split", "val", "--docs-dir", str(tmp_path / "d1")], capsys
    )
    assert code == 0 and "valid" in out
    root = _corrupted(synth_root, tmp_path, unknown_category)
    docs = tmp_path / "d2"
    code, out, err = _cli(["data", "validate", str(root), "--docs-dir", str(docs)], capsys)
    assert code == 1
    assert "annotation category_id declared in categories" in out and "failed validation" in err
    assert str(docs / "index.html") in out.replace("\n", "") and (docs / "index.html").is_file()


@pytest.mark.parametrize(
    ("setup", "args", "pattern"),
    [
        (lambda r: _ann_file(r).write_text('{"images": [\n  {"id": 1,,}]}'), [], "line 2, column 12"),
        (lambda r: _ann_file(r).unlink(), ["--split", "val"], "no COCO annotations for split 'val'"),
        (lambda r: _ann_file(r).write_text('{"images": []}'), [], "not a COCO annotation file"),
        (lambda r: shutil.rmtree(r / "annotations"), [], "not a COCO-format dataset"),
    ],
    ids=["malformed-json", "missing-annotations", "not-coco-json", "not-coco-folder"],
)
def test_cli_one_line_errors(
    synth_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: Callable[[Path], Any],
    args: list[str],
    pattern: str,
) -> None:
    root = _copy(synth_root, tmp_path / "data")
    (root / "annotations" / "instances_train.json").unlink()
    setup(root)
    code, _, err = _cli(["data", "validate", str(root), *args], capsys)
    assert code == 2
    assert pattern in err and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
