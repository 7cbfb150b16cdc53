"""``detops.deploy.evaluate`` piece by piece: the results list's rounding and pairing, how
``evaluate_runner`` batches and what it refuses, and what ``evaluate_artifact`` passes on and returns.
A stand-in runner answers with each image's ground truth (so every score is known); the end-to-end
parity of a real artifact with its checkpoint is in test_evaluate_predict.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import detops.deploy.evaluate as ev
from detops.deploy.runners.base import Detections
from detops.errors import DetopsError
from detops.evaluation import STAT_NAMES
from tests.detops.deploy.test_evaluate_predict import GroundTruthRunner

VAL_IMAGES = 10


@pytest.fixture(scope="module")
def ten_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset with 10 validation and 3 training images (small ones)."""
    from detops.data.synth import synthesize

    root = tmp_path_factory.mktemp("ten") / "data"
    synthesize(root, train=3, val=VAL_IMAGES, size=64, seed=1, progress=False)
    return root


@pytest.fixture(scope="module")
def meta(ten_val: Path) -> Any:
    """The metadata of an artifact trained on ``ten_val``'s categories."""
    from detops.deploy.artifact import ArtifactMeta

    cats = json.loads((ten_val / "annotations" / "instances_val.json").read_text())["categories"]
    cats = sorted(cats, key=lambda c: c["id"])
    return ArtifactMeta(
        variant="damo_yolo_tiny",
        family="damo_yolo",
        class_names=tuple(c["name"] for c in cats),
        category_ids=tuple(int(c["id"]) for c in cats),
        input_size=64,
        pixel_scale=255.0,
        source_sha256="",
        detops_version="test",
    )


class Recording(GroundTruthRunner):
    """The ground-truth runner, recording the size of every batch it is called with; ``nan_boxes``
    adds one detection with a NaN corner per image, ``category`` replaces every category id."""

    def __init__(
        self, meta: Any, root: Path, split: str, *, nan_boxes: bool = False, category: int | None = None
    ):
        from detops.data.dataset import CocoDetection

        ds = CocoDetection.from_root(root, split=split)
        gt: dict[int, list[Any]] = {}
        for i, info in enumerate(ds.images):
            anns = [
                (a["bbox"], a["category_id"]) for a in ds.coco["annotations"] if a["image_id"] == info["id"]
            ]
            gt[int(ds.load_raw(i)["image"].astype(np.int64).sum())] = anns
        super().__init__(meta, gt)
        self.batches: list[int] = []
        self.nan_boxes, self.category = nan_boxes, category

    def __call__(self, images: Any) -> list[Detections]:
        self.batches.append(len(images))
        out = super().__call__(images)
        if self.nan_boxes:
            out = [
                dataclasses.replace(
                    d,
                    boxes=np.concatenate([d.boxes, [[np.nan, 0, 5, 5]]]).astype(np.float32),
                    scores=np.concatenate([d.scores, [0.99]]).astype(np.float32),
                    category_ids=np.concatenate([d.category_ids, [self.meta.category_ids[0]]]).astype(
                        np.int64
                    ),
                    labels=np.concatenate([d.labels, [0]]).astype(np.int64),
                )
                for d in out
            ]
        if self.category is not None:
            out = [
                dataclasses.replace(d, category_ids=np.full_like(d.category_ids, self.category)) for d in out
            ]
        return out


# --- results_list --------------------------------------------------------------------------------


def _det(boxes: list[list[float]], scores: list[float], cats: list[int]) -> Detections:
    return Detections(
        boxes=np.array(boxes, np.float64).reshape(-1, 4),
        scores=np.array(scores, np.float64),
        category_ids=np.array(cats, np.int64),
        labels=np.zeros(len(cats), np.int64),
    )


def test_results_list_pairs_images_converts_to_xywh_and_rounds() -> None:
    a = _det([[1.23456, 2.00049, 5.5, 9.25], [0, 0, 1, 1]], [0.1234567, 0.5], [3, 1])
    b = _det([[10, 20, 12.3333333, 21]], [0.9876549], [2])
    out = ev.results_list([7, "x"], [a, b])
    assert out == [
        {"image_id": 7, "category_id": 3, "bbox": [1.235, 2.0, 4.265, 7.25], "score": 0.12346},
        {"image_id": 7, "category_id": 1, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.5},
        {"image_id": "x", "category_id": 2, "bbox": [10.0, 20.0, 2.333, 1.0], "score": 0.98765},
    ]
    assert all(type(r["category_id"]) is int for r in out)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("corner", range(4))
def test_results_list_drops_a_box_with_any_non_finite_corner(bad: float, corner: int) -> None:
    box = [1.0, 2.0, 3.0, 4.0]
    box[corner] = bad
    out = ev.results_list([1], [_det([box, [0, 0, 2, 2]], [0.5, 0.25], [1, 2])])
    assert out == [{"image_id": 1, "category_id": 2, "bbox": [0.0, 0.0, 2.0, 2.0], "score": 0.25}]


def test_results_list_refuses_unpaired_inputs() -> None:
    with pytest.raises(ValueError):
        ev.results_list([1, 2], [_det([[0, 0, 1, 1]], [0.5], [1])])
    lopsided = Detections(
        boxes=np.zeros((2, 4)),
        scores=np.ones(1),
        category_ids=np.ones(2, np.int64),
        labels=np.zeros(2, np.int64),
    )
    with pytest.raises(ValueError):
        ev.results_list([1], [lopsided])


# --- evaluate_runner -----------------------------------------------------------------------------


def test_evaluate_runner_batches_by_default_eight_or_as_asked(ten_val: Path, meta: Any) -> None:
    runner = Recording(meta, ten_val, "val")
    stats = ev.evaluate_runner(runner, data_root=ten_val)  # split "val", batches of 8 by default
    assert runner.batches == [8, 2]
    assert stats["AP"] == pytest.approx(1.0) and stats["dropped_nonfinite"] == 0
    assert set(stats) == {*STAT_NAMES, "stats", "per_class", "dropped_nonfinite"}
    runner = Recording(meta, ten_val, "val")
    ev.evaluate_runner(runner, data_root=ten_val, split="val", batch_size=3)
    assert runner.batches == [3, 3, 3, 1]


def test_a_fixed_batch_graph_is_fed_its_own_batch(ten_val: Path, meta: Any) -> None:
    runner = Recording(dataclasses.replace(meta, batch=4), ten_val, "val")
    ev.evaluate_runner(runner, data_root=ten_val, batch_size=3)
    assert runner.batches == [4, 4, 2]


def test_evaluate_runner_scores_the_split_it_is_given(ten_val: Path, meta: Any) -> None:
    runner = Recording(meta, ten_val, "train")
    stats = ev.evaluate_runner(runner, data_root=ten_val, split="train")
    assert sum(runner.batches) == 3 and stats["AP"] == pytest.approx(1.0)


def test_non_finite_boxes_are_left_out_and_counted(ten_val: Path, meta: Any) -> None:
    runner = Recording(meta, ten_val, "val", nan_boxes=True)
    stats = ev.evaluate_runner(runner, data_root=ten_val, batch_size=4)
    assert stats["dropped_nonfinite"] == VAL_IMAGES  # one per image
    assert stats["AP"] == pytest.approx(1.0)  # the finite detections are still the ground truth


def test_categories_other_than_the_artifacts_are_refused(ten_val: Path, meta: Any) -> None:
    other = dataclasses.replace(meta, category_ids=tuple(c + 100 for c in meta.category_ids))
    with pytest.raises(DetopsError) as exc:
        ev.evaluate_runner(Recording(other, ten_val, "val"), data_root=ten_val)
    ann = ten_val / "annotations" / "instances_val.json"
    assert str(exc.value) == (
        f"annotations {ann}: category ids {list(meta.category_ids)} differ from the artifact's "
        f"{list(other.category_ids)}"
    )


def test_detections_of_an_unknown_category_name_the_predictions(ten_val: Path, meta: Any) -> None:
    with pytest.raises(DetopsError) as exc:
        ev.evaluate_runner(Recording(meta, ten_val, "val", category=999), data_root=ten_val)
    assert str(exc.value).startswith("predictions <predictions>: ")


# --- evaluate_artifact ---------------------------------------------------------------------------


def test_evaluate_artifact_passes_everything_on_and_reports_the_delta(
    tiny_artifacts: dict[str, dict[str, Path]], synth_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load, real_evaluate = ev.load_runner, ev.evaluate_runner
    loads: list[tuple[str, dict[str, Any]]] = []
    evaluations: list[dict[str, Any]] = []

    def load(path: Any, **kwargs: Any) -> Any:
        loads.append((Path(path).name, kwargs))
        return real_load(path, **kwargs)

    def evaluate(runner: Any, **kwargs: Any) -> Any:
        evaluations.append({"backend": runner.backend, **kwargs})
        return real_evaluate(runner, **kwargs)

    monkeypatch.setattr(ev, "load_runner", load)
    monkeypatch.setattr(ev, "evaluate_runner", evaluate)
    onnx, ckpt = tiny_artifacts["damo_yolo_tiny"]["onnx"], tiny_artifacts["damo_yolo_tiny"]["checkpoint"]
    out = ev.evaluate_artifact(
        onnx, backend="ort", data_root=synth_root, reference=ckpt, threads=1, batch_size=2
    )
    assert loads == [
        ("best.onnx", {"backend": "ort", "device": None, "threads": 1}),
        ("best.pt", {"backend": "torch", "device": None, "threads": 1, "input_size": 64}),
    ]
    assert evaluations == [
        {"backend": "ort", "data_root": synth_root, "split": "val", "batch_size": 2},
        {"backend": "torch", "data_root": synth_root, "split": "val", "batch_size": 2},
    ]
    assert out["backend"] == "ort" and out["artifact"] == str(onnx) and out["reference_artifact"] == str(ckpt)
    assert out["split"] == "val"
    assert set(out["reference"]) == {*STAT_NAMES, "stats", "per_class"}
    assert out["delta"] == {k: float(out[k]) - float(out["reference"][k]) for k in STAT_NAMES}

    loads.clear()
    evaluations.clear()
    plain = ev.evaluate_artifact(onnx, backend="ort", data_root=synth_root, split="train")
    assert loads == [("best.onnx", {"backend": "ort", "device": None, "threads": None})]
    assert evaluations == [{"backend": "ort", "data_root": synth_root, "split": "train", "batch_size": 8}]
    assert not {"reference", "reference_artifact", "delta"} & set(plain)


def test_a_reference_of_another_variant_is_refused(
    tiny_artifacts: dict[str, dict[str, Path]], synth_root: Path
) -> None:
    onnx = tiny_artifacts["damo_yolo_tiny"]["onnx"]
    other = tiny_artifacts["rtdetrv2_tiny"]["checkpoint"]
    with pytest.raises(DetopsError) as exc:
        ev.evaluate_artifact(onnx, backend="ort", data_root=synth_root, reference=other)
    assert str(exc.value) == (
        f"--reference {other}: variant 'rtdetrv2_tiny' differs from the artifact's 'damo_yolo_tiny'"
    )


def test_evaluate_backends_passes_every_option_on(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake(artifact: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append({"artifact": artifact, **kwargs})
        stats: dict[str, Any] = {k: 0.5 for k in STAT_NAMES}
        if kwargs["reference"] is not None:
            stats.update(reference={k: 0.25 for k in STAT_NAMES}, reference_artifact="ref.pt")
        return stats

    monkeypatch.setattr(ev, "evaluate_artifact", fake)
    ev.evaluate_backends(
        "m.onnx",
        backends=("ort", "openvino"),
        data_root="d",
        split="s",
        reference="ref.pt",
        device="cuda:1",
        batch_size=3,
    )
    common = {"artifact": "m.onnx", "data_root": "d", "split": "s", "device": "cuda:1", "batch_size": 3}
    assert calls == [
        {**common, "backend": "ort", "reference": "ref.pt"},
        {**common, "backend": "openvino", "reference": None},
    ]
    calls.clear()
    out = ev.evaluate_backends("m.onnx", backends=("openvino",), data_root="d")
    assert calls == [
        {
            "artifact": "m.onnx",
            "data_root": "d",
            "split": "val",
            "device": None,  # the backend's own (load_runner)
            "batch_size": 8,
            "backend": "openvino",
            "reference": None,
        }
    ]
    assert list(out) == ["openvino"]
