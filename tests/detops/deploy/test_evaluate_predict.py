"""Artifact evaluation through the engine's COCO code, and prediction on image files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detops.cli import main
from detops.deploy.evaluate import evaluate_runner, results_list
from detops.deploy.runners.base import Batch, Detections, RunnerBase, to_detections


class GroundTruthRunner(RunnerBase):
    """A runner that 'detects' the annotated boxes of each image (matched by its pixel checksum)."""

    backend, device, threads = "fake", "cpu", None

    def __init__(self, meta, gt: dict[int, list[tuple[list[float], int]]]):
        self.meta = meta
        self.gt = gt

    def prepare(self, images):
        keys = [int(np.asarray(im, dtype=np.int64).sum()) for im in images]
        return Batch(inputs=keys, orig_sizes=np.zeros((len(images), 2), np.int64), size=0, count=len(images))

    def infer(self, batch):
        return batch.inputs

    def postprocess(self, raw, batch):
        out = []
        for key in raw:
            anns = self.gt[key]
            boxes = np.array([[x, y, x + w, y + h] for (x, y, w, h), _ in anns], np.float32).reshape(-1, 4)
            labels = np.array([self.meta.category_ids.index(c) for _, c in anns], np.int64)
            out.append(to_detections(self.meta, boxes, np.linspace(0.9, 0.5, len(anns)), labels))
        return out


def test_perfect_detections_score_ap_one(synth_root: Path, tiny_artifacts):
    """Boxes in original pixels, xyxy -> xywh and category ids reach COCOeval correctly."""
    from detops.data.dataset import CocoDetection
    from detops.deploy import load_runner

    meta = load_runner(tiny_artifacts["damo_yolo_tiny"]["onnx"], backend="ort").meta
    ds = CocoDetection.from_root(synth_root, split="val")
    gt: dict[int, list] = {}
    for i, info in enumerate(ds.images):
        anns = [(a["bbox"], a["category_id"]) for a in ds.coco["annotations"] if a["image_id"] == info["id"]]
        gt[int(ds.load_raw(i)["image"].astype(np.int64).sum())] = anns
    stats = evaluate_runner(GroundTruthRunner(meta, gt), data_root=synth_root, split="val", batch_size=3)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR100"] == pytest.approx(1.0)


def test_results_list_drops_non_finite_and_rounds():
    det = Detections(
        boxes=np.array([[1.0, 2.0, 4.5, 8.0], [np.nan, 0, 1, 1]], np.float32),
        scores=np.array([0.123456789, 0.5], np.float32),
        category_ids=np.array([7, 9], np.int64),
        labels=np.array([0, 1], np.int64),
    )
    (only,) = results_list(["img"], [det])
    assert only == {"image_id": "img", "category_id": 7, "bbox": [1.0, 2.0, 3.5, 6.0], "score": 0.12346}


@pytest.mark.parametrize("variant", ["damo_yolo_tiny", pytest.param("rtdetrv2_tiny", marks=pytest.mark.slow)])
def test_onnx_evaluation_equals_checkpoint(variant, tiny_artifacts, synth_root, capsys):
    from detops.engine.inference import evaluate_checkpoint

    paths = tiny_artifacts[variant]
    engine = evaluate_checkpoint(paths["checkpoint"], data_root=synth_root, split="val")
    code = main(
        [
            "evaluate",
            str(paths["onnx"]),
            "--data",
            str(synth_root),
            "--reference",
            str(paths["checkpoint"]),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    stats = json.loads(captured.out)
    assert stats["backend"] == "ort" and stats["artifact"] == str(paths["onnx"])
    assert set(stats["delta"]) == {
        "AP",
        "AP50",
        "AP75",
        "APs",
        "APm",
        "APl",
        "AR1",
        "AR10",
        "AR100",
        "ARs",
        "ARm",
        "ARl",
    }
    for key in ("AP", "AP50", "AR100"):
        assert stats[key] == pytest.approx(engine[key], abs=1e-3)
        assert abs(stats["delta"][key]) <= 1e-3
    # Random weights score near 0 mAP, so compare what was scored too: the engine's results list
    # (its own loader, model and post-processor) against the ONNX runner's, detection by detection.
    from detops.data.dataset import CocoDetection
    from detops.data.loader import build_loader
    from detops.data.transforms import eval_pipeline
    from detops.deploy import load_runner
    from detops.engine.inference import load_model
    from detops.engine.loop import predict

    model, post, ckpt = load_model(paths["checkpoint"])
    runner = load_runner(paths["onnx"], backend="ort")
    ds = CocoDetection.from_root(
        synth_root, split="val", transform=eval_pipeline(size=64, pixel_scale=runner.meta.pixel_scale)
    )
    loader = build_loader(ds, batch_size=2, shuffle=False, workers=0, seed=0)
    expected = predict(
        model, post, loader, label_to_category_id=ckpt["category_ids"], device=torch.device("cpu")
    )
    raw = CocoDetection.from_root(synth_root, split="val")
    samples = [raw.load_raw(i) for i in range(len(raw))]
    got = results_list([s["image_id"] for s in samples], runner([s["image"] for s in samples]))
    assert len(got) == len(expected) > 0
    key = lambda r: (r["image_id"], r["category_id"], -r["score"], r["bbox"])  # noqa: E731
    for g, e in zip(sorted(got, key=key)[:200], sorted(expected, key=key)[:200], strict=True):
        assert (g["image_id"], g["category_id"]) == (e["image_id"], e["category_id"])
        assert g["score"] == pytest.approx(e["score"], abs=1e-4)


def test_predict_writes_images_and_skips_broken_file(tiny_artifacts, synth_root, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for path in sorted((synth_root / "val").glob("*.jpg"))[:2]:
        (src / path.name).write_bytes(path.read_bytes())
    broken = src / "notes.jpg"
    broken.write_text("not an image")
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(tiny_artifacts["damo_yolo_tiny"]["onnx"]),
            str(src),
            "--score",
            "0.05",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(broken) in errors[0]
    written = sorted(p.name for p in out.glob("*.jpg"))
    assert written == sorted(p.name for p in src.glob("*.jpg") if p != broken)
    for name in written:
        drawn = cv2.imread(str(out / name))
        original = cv2.imread(str(src / name))
        assert drawn.shape == original.shape
        assert np.abs(drawn.astype(int) - original.astype(int)).max() > 50, "boxes were drawn"
    coco = json.loads((out / "detections.json").read_text())
    assert len(coco["images"]) == 2 and coco["annotations"]
    assert {c["name"] for c in coco["categories"]} >= {c["name"] for c in coco["categories"]}
    assert all(a["score"] >= 0.05 for a in coco["annotations"])
    cat_ids = {c["id"] for c in coco["categories"]}
    assert all(a["category_id"] in cat_ids for a in coco["annotations"])


def test_evaluate_backends_scores_the_reference_once_and_gives_every_backend_its_delta(monkeypatch):
    import detops.deploy.evaluate as ev
    from detops.evaluation import STAT_NAMES

    figures = {"ort": 0.30, "openvino": 0.25}
    calls: list[tuple[str, object]] = []

    def fake(artifact, *, backend, reference=None, **_):
        calls.append((backend, reference))
        stats = {**{k: figures[backend] for k in STAT_NAMES}, "backend": backend}
        if reference is not None:
            ref = {k: 0.40 for k in STAT_NAMES}
            stats.update(reference=ref, reference_artifact=str(reference), delta=ev.stat_delta(stats, ref))
        return stats

    monkeypatch.setattr(ev, "evaluate_artifact", fake)
    out = ev.evaluate_backends("m.onnx", backends=("ort", "openvino"), data_root="d", reference="best.pt")
    assert calls == [("ort", "best.pt"), ("openvino", None)]  # the checkpoint scored once
    assert out["openvino"]["reference"] == out["ort"]["reference"]
    assert out["openvino"]["reference_artifact"] == "best.pt"
    assert out["ort"]["delta"]["AP"] == pytest.approx(0.30 - 0.40)
    assert out["openvino"]["delta"]["AP"] == pytest.approx(0.25 - 0.40)
    plain = ev.evaluate_backends("m.onnx", backends=("ort", "openvino"), data_root="d")
    assert all("delta" not in s for s in plain.values())
