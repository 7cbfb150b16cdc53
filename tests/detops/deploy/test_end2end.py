"""End-to-end graphs (``detops export --end2end``): their detections equal the library's post-processing.

The reference is the plain graph of the same checkpoint on the same backend with the library's
post-processing in Python (``family_detections``): both graphs share the network, so the comparison
sees the in-graph NMS / top-K alone. Stated tolerances: boxes within 1e-3 px (original pixels), scores
within 1e-5, labels and counts equal, COCO statistics identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detops.cli import main
from detops.deploy import load_runner
from detops.deploy.artifact import read_onnx_metadata
from detops.deploy.runners.base import Detections

BOX_ATOL_PX, SCORE_ATOL = 1e-3, 1e-5
VARIANTS = ("damo_yolo_tiny", "rtdetrv2_tiny")


@pytest.fixture(scope="module")
def e2e_onnx(tiny_artifacts) -> dict[str, Path]:
    """``{variant: best_e2e.onnx}``, written by ``detops export RUN_DIR --end2end`` beside the plain one."""
    out = {}
    for variant in VARIANTS:
        assert main(["export", str(tiny_artifacts[variant]["run"]), "--end2end"]) == 0
        out[variant] = tiny_artifacts[variant]["run"] / "best_e2e.onnx"
    return out


def val_images(root: Path) -> list[np.ndarray]:
    from detops.data.dataset import CocoDetection

    dataset = CocoDetection.from_root(root, split="val", transform=None)
    return [dataset[i]["image"] for i in range(len(dataset))]


def assert_equal_detections(got: list[Detections], ref: list[Detections]) -> dict[str, float]:
    """Same count, labels and order; boxes within BOX_ATOL_PX, scores within SCORE_ATOL. Returns the
    largest differences seen."""
    assert len(got) == len(ref)
    worst = {"box_px": 0.0, "score": 0.0}
    for g, r in zip(got, ref, strict=True):
        assert len(g) == len(r) > 0
        np.testing.assert_array_equal(g.labels, r.labels)
        np.testing.assert_array_equal(g.category_ids, r.category_ids)
        np.testing.assert_allclose(g.boxes, r.boxes, rtol=0, atol=BOX_ATOL_PX)
        np.testing.assert_allclose(g.scores, r.scores, rtol=0, atol=SCORE_ATOL)
        worst["box_px"] = max(worst["box_px"], float(np.abs(g.boxes - r.boxes).max()))
        worst["score"] = max(worst["score"], float(np.abs(g.scores - r.scores).max()))
    return worst


def test_cli_export_end2end_writes_final_detection_outputs_and_metadata(tiny_artifacts, e2e_onnx):
    import onnx

    damo = onnx.load(str(e2e_onnx["damo_yolo_tiny"]))
    assert [o.name for o in damo.graph.output] == ["num_dets", "boxes", "scores", "labels"]
    assert [i.name for i in damo.graph.input if i.name == "images"] == ["images"]
    assert "NonMaxSuppression" in {n.op_type for n in damo.graph.node}
    meta = read_onnx_metadata(e2e_onnx["damo_yolo_tiny"])
    assert (meta.end2end, meta.max_detections, meta.score_threshold, meta.iou_threshold) == (
        True,
        500,
        0.05,
        0.7,
    )
    rt = read_onnx_metadata(e2e_onnx["rtdetrv2_tiny"])
    assert (rt.end2end, rt.max_detections, rt.score_threshold, rt.iou_threshold) == (True, 300, None, None)
    assert not read_onnx_metadata(tiny_artifacts["damo_yolo_tiny"]["onnx"]).end2end


@pytest.mark.parametrize("backend", ["ort", "openvino"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_end2end_equals_library_postprocessing_on_val(tiny_artifacts, e2e_onnx, synth_root, variant, backend):
    """The whole val split in one batch (so padding past num_dets is exercised), and COCO mAP."""
    from detops.deploy.evaluate import evaluate_runner

    e2e = load_runner(e2e_onnx[variant], backend=backend, threads=1)
    plain = load_runner(tiny_artifacts[variant]["onnx"], backend=backend, threads=1)
    imgs = val_images(synth_root)
    assert len(imgs) > 1
    prepared = e2e.prepare(imgs)
    raw = e2e.infer(prepared)
    assert raw["boxes"].shape == (len(imgs), e2e.meta.max_detections, 4)
    assert (np.asarray(raw["num_dets"]) < e2e.meta.max_detections).all()  # padded
    worst = assert_equal_detections(e2e.postprocess(raw, prepared), plain(imgs))
    print(f"{variant} {backend}: max |box| {worst['box_px']:.2e} px, max |score| {worst['score']:.2e}")
    got = evaluate_runner(e2e, data_root=synth_root, batch_size=2)
    ref = evaluate_runner(plain, data_root=synth_root, batch_size=2)
    assert got["stats"] == ref["stats"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_more_candidates_than_k_keeps_the_best_k(tiny_artifacts, tmp_path, variant):
    """K smaller than the candidates: the graph's top-K equals the library's cut at K (export check
    included), on a batch of 3."""
    import models
    from detops.engine.checkpoint import model_weights, read_checkpoint
    from detops.export import end2end_differences, export_onnx, run_onnx

    ckpt = read_checkpoint(tiny_artifacts[variant]["checkpoint"])
    model = models.build_model(variant, num_classes=ckpt["num_classes"])
    model.load_state_dict(model_weights(ckpt))
    if variant == "damo_yolo_tiny":
        post = models.damo_yolo.DamoYoloPostprocessor(num_classes=ckpt["num_classes"], max_detections=7)
        size = 64
    else:
        post = models.rtdetrv2.RTDETRPostProcessor(num_classes=ckpt["num_classes"], num_top_queries=7)
        size = 128
    report = export_onnx(variant, model, tmp_path / "k7.onnx", image_size=size, postprocessor=post)
    assert report.output_names == ["num_dets", "boxes", "scores", "labels"]
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    images = images * (255.0 if variant == "damo_yolo_tiny" else 1.0)
    num, boxes, scores, labels = run_onnx(report.path, {"images": images.numpy()})
    assert boxes.shape == (3, 7, 4) and (num == 7).all()
    deployed = model.eval()
    deployed.deploy()
    with torch.no_grad():
        ref = post(deployed(images), image_size=(size, size), orig_sizes=torch.tensor([[size, size]] * 3))
    assert all(len(r["scores"]) == 7 for r in ref)
    diff = end2end_differences({"num_dets": num, "boxes": boxes, "scores": scores, "labels": labels}, ref)
    # Against PyTorch's own raw outputs (not ONNX Runtime's): float noise of the network is in it too.
    assert diff["count_mismatches"] == diff["unmatched"] == 0
    assert diff["max_box_px"] < 1e-2 and diff["max_score"] < 1e-4


def test_export_check_fails_and_writes_nothing_when_the_graph_nms_differs(
    tiny_artifacts, tmp_path, monkeypatch
):
    """A graph whose NMS threshold is not the library's: the export's check fails, no file appears."""
    import models
    from detops.engine.checkpoint import model_weights, read_checkpoint
    from detops.errors import DetopsError
    from detops.export import export_onnx
    from models.damo_yolo import end2end

    ckpt = read_checkpoint(tiny_artifacts["damo_yolo_tiny"]["checkpoint"])
    model = models.build_model("damo_yolo_tiny", num_classes=ckpt["num_classes"])
    model.load_state_dict(model_weights(ckpt))
    real = end2end.DamoYoloEnd2End.__init__

    def looser(self, model, *, score_threshold, iou_threshold, max_detections):  # type: ignore[no-untyped-def]
        real(self, model, score_threshold=score_threshold, iou_threshold=0.3, max_detections=max_detections)

    monkeypatch.setattr(end2end.DamoYoloEnd2End, "__init__", looser)
    post = models.build_postprocessor("damo_yolo_tiny", num_classes=ckpt["num_classes"])
    dst = tmp_path / "bad.onnx"
    with pytest.raises(DetopsError, match="differ from the library's post-processing"):
        export_onnx("damo_yolo_tiny", model, dst, image_size=64, postprocessor=post)
    assert list(tmp_path.iterdir()) == []


def test_profile_reports_end2end_beside_plain_graph_plus_python_nms(
    tiny_artifacts, e2e_onnx, capsys, tmp_path
):
    import jsonschema

    from detops.deploy.profile import PROFILE_SCHEMA

    out = tmp_path / "p.json"
    args = ["profile", str(e2e_onnx["damo_yolo_tiny"]), "--backend", "ort", "--threads", "1"]
    args += ["--iters", "2", "--warmup", "0", "--baseline", str(tiny_artifacts["damo_yolo_tiny"]["onnx"])]
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "end-to-end graph (NMS inside) model" in text and "+ Python post-processing" in text
    result = json.loads(out.read_text())
    jsonschema.validate(result, PROFILE_SCHEMA)
    assert result["end2end_graph"] and not result["baseline"]["end2end_graph"]
    c = result["comparison"]
    assert c["plain_model_plus_post_ms"] == pytest.approx(c["plain_model_ms"] + c["plain_postprocess_ms"])
    assert c["end2end_model_ms"] == result["model"]["median_ms"] > 0
