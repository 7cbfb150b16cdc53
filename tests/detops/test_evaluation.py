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


def _random_problem(seed: int, images: int = 60) -> tuple[dict, list[dict]]:
    """Ground truth with gappy ids, crowd boxes, empty images and all object sizes; results made of
    jittered true positives, duplicates and false positives with random scores."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 4, 11, 57, 90)]
    gt: dict = {"images": [], "annotations": [], "categories": cats}
    results: list[dict] = []
    for image_id in range(1, images + 1):
        w, h = int(rng.integers(200, 640)), int(rng.integers(200, 640))
        gt["images"].append({"id": image_id, "file_name": f"{image_id}.jpg", "width": w, "height": h})
        for _ in range(int(rng.integers(0, 8))):
            bw, bh = float(rng.uniform(4, w / 2)), float(rng.uniform(4, h / 2))
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            cat = int(rng.choice([c["id"] for c in cats]))
            crowd = int(rng.random() < 0.05)
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": crowd,
                }
            )
            for _ in range(int(rng.integers(0, 3))):
                jx, jy = rng.normal(0, 0.1, size=2) * (bw, bh)
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": cat
                        if rng.random() < 0.9
                        else int(rng.choice([c["id"] for c in cats])),
                        "bbox": [x + jx, y + jy, bw * rng.uniform(0.8, 1.2), bh * rng.uniform(0.8, 1.2)],
                        "score": float(rng.random()),
                    }
                )
        for _ in range(int(rng.integers(0, 4))):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(rng.choice([c["id"] for c in cats])),
                    "bbox": [float(rng.uniform(0, w / 2)), float(rng.uniform(0, h / 2)), 20.0, 30.0],
                    "score": float(rng.random()),
                }
            )
    return gt, results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faster_backend_gives_identical_statistics(seed: int) -> None:
    gt, results = _random_problem(seed)
    reference = evaluate_results(gt, results, backend="pycocotools")
    faster = evaluate_results(gt, results, backend="faster")
    assert 0.05 < reference["AP"] < 0.95  # a non-trivial problem
    assert faster["stats"] == pytest.approx(reference["stats"], abs=1e-12)
    assert faster["per_class"].keys() == reference["per_class"].keys()
    for name, ap in reference["per_class"].items():
        assert faster["per_class"][name] == pytest.approx(ap, abs=1e-12), name


def test_unknown_backend_is_refused() -> None:
    gt = _gt()
    with pytest.raises(DetopsError, match="backend"):
        evaluate_results(gt, _as_results(gt), backend="fastest")


def test_cli_backends_print_the_same_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from detops.cli import main

    gt, results = _random_problem(3, images=20)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    args = [
        "evaluate",
        "--annotations",
        str(tmp_path / "gt.json"),
        "--predictions",
        str(tmp_path / "dt.json"),
    ]
    outputs = []
    for backend in ("pycocotools", "faster"):
        assert main([*args, "--json", "--backend", backend]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    reference, faster = outputs
    assert reference["AP"] > 0
    assert {k: v for k, v in faster.items() if k != "per_class"} == {
        k: v for k, v in reference.items() if k != "per_class"
    }
    # Per-class means may differ in the last bit (summation order), nothing more.
    assert faster["per_class"] == pytest.approx(reference["per_class"], abs=1e-12)
