"""COCO evaluation: ground truth fed back scores AP 1.0, errors are one-liners, CLI JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detops.errors import DetopsError
from detops.evaluation import evaluate_files, evaluate_results, format_stats


def _gt() -> dict:
    # Non-contiguous category ids, an image without objects, a crowd region.
    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
            {"id": 7, "file_name": "b.jpg", "width": 120, "height": 160},
            {"id": 9, "file_name": "c.jpg", "width": 64, "height": 64},
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 17, "name": "dog"}, {"id": 90, "name": "emu"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 50, 40], "area": 2000, "iscrowd": 0},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 17,
                "bbox": [100, 20, 60, 70],
                "area": 4200,
                "iscrowd": 0,
            },
            {"id": 3, "image_id": 7, "category_id": 3, "bbox": [5, 5, 100, 140], "area": 14000, "iscrowd": 0},
            {"id": 4, "image_id": 7, "category_id": 17, "bbox": [0, 0, 30, 30], "area": 900, "iscrowd": 1},
        ],
    }


def _as_results(gt: dict) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]


def test_ground_truth_as_predictions_scores_one() -> None:
    gt = _gt()
    stats = evaluate_results(gt, _as_results(gt))
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AP50"] == pytest.approx(1.0)
    assert stats["AP75"] == pytest.approx(1.0)
    assert stats["per_class"]["cat"] == pytest.approx(1.0)
    assert stats["per_class"]["dog"] == pytest.approx(1.0)
    assert stats["per_class"]["emu"] is None  # no ground truth for this class
    assert len(stats["stats"]) == 12


def test_shifted_predictions_score_lower() -> None:
    gt = _gt()
    results = _as_results(gt)
    results[0]["bbox"] = [30, 25, 50, 40]  # IoU with its GT well below 0.5
    stats = evaluate_results(gt, results)
    assert stats["AP"] < 0.9
    assert stats["per_class"]["cat"] < stats["per_class"]["dog"]


def test_empty_results_give_zero() -> None:
    stats = evaluate_results(_gt(), [])
    assert stats["AP"] == 0.0 and stats["per_class"]["cat"] == 0.0


def test_unknown_image_id_is_a_clear_error(tmp_path: Path) -> None:
    gt = _gt()
    results = _as_results(gt) + [{"image_id": 12345, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    with pytest.raises(DetopsError, match=r"image_id value\(s\) not in the annotations: 12345"):
        evaluate_files(annotations=tmp_path / "gt.json", predictions=tmp_path / "dt.json")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    (tmp_path / "gt.json").write_text(json.dumps(_gt()))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DetopsError, match="not found"):
        evaluate_files(annotations=tmp_path / "gt.json", predictions=tmp_path / "nope.json")
    with pytest.raises(DetopsError, match="not valid JSON"):
        evaluate_files(annotations=tmp_path / "gt.json", predictions=tmp_path / "bad.json")


def test_matches_pycocotools_directly(tmp_path: Path) -> None:
    """Our numbers are pycocotools' numbers on an arbitrary results file."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = _gt()
    rng = np.random.default_rng(0)
    results = []
    for a in gt["annotations"]:
        for _ in range(3):
            x, y, w, h = a["bbox"]
            jitter = rng.normal(0, 6, size=4)
            results.append(
                {
                    "image_id": a["image_id"],
                    "category_id": a["category_id"],
                    "bbox": [x + jitter[0], y + jitter[1], max(1, w + jitter[2]), max(1, h + jitter[3])],
                    "score": float(rng.random()),
                }
            )
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    ours = evaluate_files(annotations=tmp_path / "gt.json", predictions=tmp_path / "dt.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(coco, coco.loadRes(str(tmp_path / "dt.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ours["stats"] == pytest.approx(list(ev.stats), abs=0)
    assert 0.0 < ours["AP"] < 1.0
    assert "Average Precision" in format_stats(ours)


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from detops.cli import main

    gt = _gt()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(_as_results(gt)))
    code = main(
        [
            "evaluate",
            "--annotations",
            str(tmp_path / "gt.json"),
            "--predictions",
            str(tmp_path / "dt.json"),
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["AP"] == pytest.approx(1.0) and set(out) >= {
        "AP",
        "AP50",
        "AP75",
        "APs",
        "APm",
        "APl",
        "per_class",
    }
    (tmp_path / "dt.json").write_text(
        json.dumps([{"image_id": 999, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 1}])
    )
    code = main(
        ["evaluate", "--annotations", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "dt.json")]
    )
    assert code != 0
    assert "999" in capsys.readouterr().err
