"""Every runner returns the PyTorch model's detections (engine path: eval_pipeline + the family's
post-processor on the unfused checkpoint model), and bad requests are one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detops.cli import main
from detops.deploy import load_runner
from detops.deploy.runners.base import Detections
from detops.errors import DetopsError

# Stated tolerances: scores within 1e-4 absolute, boxes within 1e-2 pixel (float32 reordering of
# fused convolutions and graph optimisations; images are ~100 px).
SCORE_ATOL, BOX_ATOL = 1e-4, 1e-2


def images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(50, 70, 3), (96, 80, 3), (120, 64, 3)]]


def engine_reference(checkpoint: Path, imgs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """What the engine's evaluation computes, written without the deploy package."""
    import models
    from detops.data.transforms import eval_pipeline
    from detops.engine.checkpoint import model_weights, read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    variant = models.get_variant(ckpt["variant"])
    model = models.build_model(variant.name, num_classes=ckpt["num_classes"])
    model.load_state_dict(model_weights(ckpt))
    model.eval()
    post = models.build_postprocessor(variant.name, num_classes=ckpt["num_classes"])
    pipe = eval_pipeline(size=ckpt["img_size"], pixel_scale=variant.pixel_scale)
    rng = np.random.default_rng(0)
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    batch = torch.stack([pipe({"image": im, **empty}, rng=rng)["image"] for im in imgs])
    sizes = torch.tensor([im.shape[:2] for im in imgs], dtype=torch.int64)
    with torch.no_grad():
        dets = post(model(batch), image_size=(batch.shape[-2], batch.shape[-1]), orig_sizes=sizes)
    ids = np.asarray(ckpt["category_ids"])
    return [
        {
            "boxes": d["boxes"].numpy(),
            "scores": d["scores"].numpy(),
            "category_ids": ids[d["labels"].numpy()],
        }
        for d in dets
    ]


def assert_same_detections(got: Detections, ref: dict[str, np.ndarray], *, top: int = 50) -> None:
    """Same count and sorted scores; each of the ``top`` best reference detections has a twin (same
    category, score within SCORE_ATOL, box within BOX_ATOL): among tied scores the order may differ."""
    assert len(got) == len(ref["scores"]) > 0
    np.testing.assert_allclose(np.sort(got.scores), np.sort(ref["scores"]), atol=SCORE_ATOL)
    order = np.argsort(-ref["scores"])[:top]
    for i in order:
        twin = (
            (got.category_ids == ref["category_ids"][i])
            & (np.abs(got.scores - ref["scores"][i]) <= SCORE_ATOL)
            & (np.abs(got.boxes - ref["boxes"][i]).max(axis=1) <= BOX_ATOL)
        )
        assert twin.any(), f"reference detection {i} ({ref['scores'][i]:.5f}) has no twin"


@pytest.mark.parametrize("variant", ["damo_yolo_tiny", "rtdetrv2_tiny"])
@pytest.mark.parametrize("backend", ["torch", "ort", "openvino"])
def test_runner_matches_pytorch(tiny_artifacts, variant, backend):
    paths = tiny_artifacts[variant]
    artifact = paths["checkpoint"] if backend == "torch" else paths["onnx"]
    runner = load_runner(artifact, backend=backend, threads=1)
    assert (runner.backend, runner.device, runner.meta.variant) == (backend, "cpu", variant)
    imgs = images()
    refs = engine_reference(paths["checkpoint"], imgs)
    dets = runner(imgs)
    assert len(dets) == len(imgs)
    for det, ref in zip(dets, refs, strict=True):
        assert det.boxes.dtype == np.float32 and det.category_ids.dtype == np.int64
        assert_same_detections(det, ref)
    # The three stages compose to the same result as the call.
    batch = runner.prepare(imgs)
    staged = runner.postprocess(runner.infer(batch), batch)
    np.testing.assert_array_equal(staged[1].scores, dets[1].scores)


def test_fixed_batch_graph_is_fed_in_padded_chunks(tiny_artifacts, tmp_path):
    from detops.deploy.exporting import export_artifact

    report, _ = export_artifact(
        tiny_artifacts["damo_yolo_tiny"]["checkpoint"], out=tmp_path / "b2.onnx", batch=2
    )
    runner = load_runner(report.path, backend="ort")
    imgs = images()
    refs = engine_reference(tiny_artifacts["damo_yolo_tiny"]["checkpoint"], imgs)
    dets = runner(imgs)  # 3 images -> chunks of 2 and 1 (+1 padding)
    assert len(dets) == 3
    for det, ref in zip(dets, refs, strict=True):
        assert_same_detections(det, ref)


def test_bad_requests_are_one_line_errors(tiny_artifacts, tmp_path, capsys):
    onnx_file = tiny_artifacts["damo_yolo_tiny"]["onnx"]
    with pytest.raises(DetopsError, match="unknown backend 'tflite'"):
        load_runner(onnx_file, backend="tflite")
    with pytest.raises(DetopsError, match="artifact not found"):
        load_runner(tmp_path / "missing.onnx", backend="ort")
    with pytest.raises(DetopsError, match="backend 'ort' runs onnx artifacts, this is a checkpoint file"):
        load_runner(tiny_artifacts["damo_yolo_tiny"]["checkpoint"], backend="ort")
    with pytest.raises(DetopsError, match="backend 'torch' runs checkpoint artifacts, this is a onnx file"):
        load_runner(onnx_file, backend="torch")
    for args, needle in [
        (["profile", str(onnx_file), "--backend", "tflite"], "unknown backend 'tflite'"),
        (["profile", str(tmp_path / "gone.onnx"), "--backend", "ort"], "artifact not found"),
        (["profile", str(onnx_file), "--backend", "torch"], "runs checkpoint artifacts"),
    ]:
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and needle in err, err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["damo_yolo_t", "rtdetrv2_s"])
def test_smallest_real_variant_runners_match(variant, synth_root, tmp_path, checkpoint_factory):
    """The smallest published variant of each family, at 320 px, on all three CPU backends."""
    from detops.deploy.exporting import export_artifact

    ckpt = checkpoint_factory(tmp_path / "run" / "best.pt", variant, data_root=synth_root, size=320)
    report, _ = export_artifact(ckpt)
    imgs = images()
    refs = engine_reference(ckpt, imgs)
    for backend, artifact in [("torch", ckpt), ("ort", report.path), ("openvino", report.path)]:
        dets = load_runner(artifact, backend=backend)(imgs)
        for det, ref in zip(dets, refs, strict=True):
            assert_same_detections(det, ref)
