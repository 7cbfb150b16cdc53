"""The check table shared by ``data validate`` (through GE) and training (directly, ``failing_rows``).

test_validate.py holds GE to each corruption's expected failure; these tests hold the GE-free
evaluator to the same expectations on the same corruptions, so training refuses what validation
refuses. The slow test compares the two side by side.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detops.data.checks import Check, check_annotations, checks, failing_rows, frames
from detops.data.dataset import CocoDetection
from detops.errors import DetopsError
from tests.detops.data.test_validate import CASES, _ann_file, _corrupted


def _pure_failures(root: Path) -> dict[tuple[str, str], list[str]]:
    """(table, column) -> failing ids, for every check of ``root``'s val split (all images decoded)."""
    path = _ann_file(root)
    data = json.loads(path.read_text())
    tables = frames(data, file=path, image_dir=root / "val", sample_images=None)
    cats = sorted(int(v) for v in tables["categories"]["id"].dropna())
    out: dict[tuple[str, str], list[str]] = {}
    for table, df in tables.items():
        for check in checks(table, category_ids=cats):
            bad = failing_rows(df, check)
            if bad.any():
                ids = df["id"][bad]
                out[(table, check.column)] = [str(int(v)) if not math.isnan(v) else "nan" for v in ids]
    return out


def test_valid_data_passes(synth_root: Path) -> None:
    assert _pure_failures(synth_root) == {}
    for split in ("train", "val"):
        CocoDetection.from_root(synth_root, split=split)


@pytest.mark.parametrize("case", list(CASES))
def test_each_corruption_fails_the_same_check_as_validate(
    synth_root: Path, tmp_path: Path, case: str
) -> None:
    corrupt, table, column, bad_id = CASES[case]
    root = _corrupted(synth_root, tmp_path, corrupt)
    data = json.loads(_ann_file(root).read_text())
    failed = _pure_failures(root)
    assert (table, column) in failed, sorted(failed)
    assert str(bad_id(data)) in failed[(table, column)]
    allowed = {(table, column), ("annotations", "image_declared")}
    if case == "missing image height":
        allowed.add(("images", "size_matches"))
    assert set(failed) <= allowed, sorted(failed)


@pytest.mark.parametrize("case", [c for c in CASES if c not in ("truncated JPEG", "wrong declared size")])
def test_dataset_refuses_with_the_check_description(synth_root: Path, tmp_path: Path, case: str) -> None:
    """What training and checkpoint evaluation read (CocoDetection) is refused with the description
    ``data validate`` prints. Decoding is left to the loader (see test_bad_input), so the two
    decode checks are not among these."""
    corrupt, table, column, bad_id = CASES[case]
    root = _corrupted(synth_root, tmp_path, corrupt)
    data = json.loads(_ann_file(root).read_text())
    cats = [int(c["id"]) for c in data["categories"]]
    described = [f"'{c.description}'" for c in checks(table, category_ids=cats) if c.column == column]
    with pytest.raises(DetopsError) as info:
        CocoDetection.from_root(root, split="val")
    message = str(info.value)
    assert "\n" not in message and str(_ann_file(root)) in message
    assert any(d in message for d in described), message
    assert f"(id {bad_id(data)})" in message or table == "images", message


def test_ground_truth_without_area_or_iscrowd_may_be_evaluated(tmp_path: Path) -> None:
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}],
    }
    check_annotations(gt, file=tmp_path / "gt.json", image_dir=None, optional=("area", "iscrowd"))
    with pytest.raises(DetopsError, match="'annotation area \\(a number\\) present'"):
        check_annotations(gt, file=tmp_path / "gt.json", image_dir=None)
    gt["annotations"][0]["bbox"] = [1, 1, "2", 2]
    with pytest.raises(DetopsError, match=r"'bbox is a list of 4 numbers'.*bbox \[1, 1, '2', 2\]"):
        check_annotations(gt, file=tmp_path / "gt.json", image_dir=None, optional=("area", "iscrowd"))


def test_failing_rows_follows_ge_null_semantics() -> None:
    df = pd.DataFrame(
        {
            "id": [1.0, 1.0, np.nan, np.nan, 5.0],
            "v": [0.0, 1.0, np.nan, 2.0, -1.0],
            "flag": pd.Series([True, False, None, True, None], dtype=object),
        }
    )
    assert failing_rows(df, Check("t", "id", "unique", "", "id")).tolist() == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert failing_rows(df, Check("t", "id", "not_null", "", "id")).tolist() == [
        False,
        False,
        True,
        True,
        False,
    ]
    positive = Check("t", "v", "between", "", "v", min_value=0, strict_min=True)
    assert failing_rows(df, positive).tolist() == [True, False, False, False, True]
    at_most_one = Check("t", "v", "between", "", "v", max_value=1.0)
    assert failing_rows(df, at_most_one).tolist() == [False, False, False, True, False]
    true = Check("t", "flag", "in_set", "", "flag", value_set=(True,))
    assert failing_rows(df, true).tolist() == [False, True, False, False, False]


@pytest.mark.slow
def test_validate_reports_the_same_description_and_ids(synth_root: Path, tmp_path: Path) -> None:
    """GE and the direct evaluator side by side on a file with several defects at once."""
    from detops.data.validate import validate_dataset

    def corrupt(root: Path, data: dict[str, Any]) -> None:
        for case in (
            "bbox of 3 numbers",
            "zero area",
            "iscrowd not 0/1",
            "unknown category",
            "wrong declared size",
        ):
            CASES[case][0](root, data)

    root = _corrupted(synth_root, tmp_path, corrupt)
    shutil.rmtree(root / "train")  # val only
    (root / "annotations" / "instances_train.json").unlink()
    report = validate_dataset(root, splits=["val"], sample_images=None)
    ge = {(f.table, f.column): (f.description, sorted(f.examples)) for f in report.failures}
    pure = _pure_failures(root)
    data = json.loads(_ann_file(root).read_text())
    cats = [int(c["id"]) for c in data["categories"]]
    described = {
        (t, c.column): c.description for t in ("images", "annotations") for c in checks(t, category_ids=cats)
    }
    assert set(ge) == set(pure)
    for key, (description, examples) in ge.items():
        assert description == described[key]
        assert examples == sorted(set(pure[key]))[: len(examples)]
